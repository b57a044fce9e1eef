"""A client process for framework tests, driven over stdin/stdout.

``python -m t.integration.frameworks.driver [--alias] MODULE`` imports MODULE (with the
``kombu`` import alias installed first when ``--alias`` is given) and then answers JSON
requests, one per line: ``{"id": 1, "call": "name", "args": [...], "kwargs": {...}}`` runs
``MODULE.name(*args, **kwargs)`` and replies ``{"id": 1, "ok": result}`` or ``{"id": 1,
"error": {"type": ..., "message": ..., "traceback": ...}}``.  Replies travel on the original
stdout only; whatever the framework prints goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from typing import Any


def _error(exc: BaseException) -> dict[str, Any]:
    kind = type(exc)
    return {
        "type": f"{kind.__module__}.{kind.__qualname__}",
        "name": kind.__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alias", action="store_true", help="install the kombu -> kombu_like alias first")
    parser.add_argument("module")
    options = parser.parse_args()
    # keep a private channel for replies; everything else printed goes to stderr
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    if options.alias:
        import kombu_like.alias

        kombu_like.alias.install()
    module = importlib.import_module(options.module)
    replies.write(json.dumps({"id": 0, "ok": "ready"}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        try:
            result = getattr(module, request["call"])(*request.get("args", ()), **request.get("kwargs", {}))
            reply = {"id": request["id"], "ok": result}
        except BaseException as exc:  # every failure goes back to the test, which decides
            reply = {"id": request["id"], "error": _error(exc)}
        replies.write(json.dumps(reply, default=repr) + "\n")
        if request["call"] == "shutdown":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
