"""Virtual environments for framework tests, built once per requirement set and cached.

The cache lives in ``$KOMBU_LIKE_FRAMEWORKS_DIR`` (default ``~/.cache/kombu_like/frameworks``);
a venv's directory name carries a hash of its requirements and the Python version, so
changing a pin builds a new one.  kombu_like itself is not installed into them: processes
get the working tree on ``PYTHONPATH`` (see :func:`process_env`), so tests always run the
code under test.  A build that fails fails the test that needed it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]

#: what each framework's environment holds; Kombu 5.7 is there too (the frameworks pull
#: it in) and serves the interoperability tests, while the alias keeps it out of the way
REQUIREMENTS: dict[str, list[str]] = {
    "celery": [
        "celery==5.7.0",
        "kombu==5.7.0",
        "amqp==5.4.2",
        "billiard==4.3.2",
        "vine==5.1.0",
        "redis==8.1.0",
        # Kombu's own Redis transport needs it (the interoperability tests run Kombu)
        "packaging==26.3",
    ],
    "nameko": [
        "nameko==2.14.1",
        "eventlet==0.41.3",
        # ``nameko`` imports pkg_resources
        "setuptools<81",
        "kombu==5.7.0",
        "amqp==5.4.2",
        "vine==5.1.0",
    ],
    "oslo": [
        "oslo.messaging==18.3.1",
        "kombu==5.7.0",
        "amqp==5.4.2",
        "vine==5.1.0",
        # what oslo.messaging's own unit tests need
        "oslotest==6.1.1",
        "testscenarios==0.7.0",
        "fixtures==4.3.2",
        "testtools==2.9.1",
    ],
}

#: generous: the first build downloads packages
BUILD_TIMEOUT = 900


def cache_dir() -> Path:
    default = Path.home() / ".cache" / "kombu_like" / "frameworks"
    return Path(os.environ.get("KOMBU_LIKE_FRAMEWORKS_DIR", default))


def _key(requirements: list[str]) -> str:
    blob = json.dumps([list(sys.version_info[:2]), sorted(requirements)]).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        # several test runs may share the cache; only one builds a given venv
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def framework_python(name: str) -> Path:
    """The interpreter of ``name``'s environment, building the environment if needed."""
    requirements = REQUIREMENTS[name]
    venv = cache_dir() / f"{name}-py{sys.version_info[0]}{sys.version_info[1]}-{_key(requirements)}"
    python = venv / "bin" / "python"
    marker = venv / ".complete"
    if marker.exists():
        return python
    with _locked(cache_dir() / f"{name}.lock"):
        if marker.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        _run([sys.executable, "-m", "venv", str(venv)], f"creating the {name} virtualenv")
        _run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
            f"installing {name} test dependencies ({', '.join(requirements)})",
        )
        marker.write_text("\n".join(requirements) + "\n")
    return python


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what}: timed out after {BUILD_TIMEOUT}s") from exc
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def process_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a framework process: the working tree importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PYTHONSTARTUP", None)
    env.update(extra or {})
    return env
