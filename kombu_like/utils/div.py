"""Last-resort state dumps (Kombu's ``kombu.utils.div``)."""

from __future__ import annotations

import logging
import os
import pickle
import tempfile
from collections.abc import Callable
from pprint import pformat
from typing import IO, Any

__all__ = ["emergency_dump_state"]

logger = logging.getLogger(__name__)

# the package logger's NullHandler comes with the exception tree
from .. import exceptions as _exceptions  # noqa: E402,F401


def emergency_dump_state(
    state: Any,
    open_file: Callable[..., IO[Any]] = open,
    dump: Callable[..., Any] | None = None,
    stderr: IO[str] | None = None,
) -> str:
    """Write ``state`` (messages that could not be given back) to a new temporary file.

    Pickled by default; if ``state`` cannot be pickled, its ``pformat`` text is written
    instead so nothing is lost.  Returns the file's path, which is also logged (or printed
    to ``stderr``).
    """
    mode = "wb" if dump is None else "w"
    dump = dump or pickle.dump
    fd, path = tempfile.mkstemp(prefix="kombu_like-state-")
    os.close(fd)
    if stderr is not None:
        print(f"EMERGENCY DUMP STATE TO FILE -> {path} <-", file=stderr)
    else:
        logger.error("EMERGENCY DUMP STATE TO FILE -> %s <-", path, extra={"emergency_state_file": path})
    fh = open_file(path, mode)
    try:
        try:
            dump(state, fh, protocol=0)
        except Exception as exc:
            logger.warning("cannot pickle state (%r); writing it as text", exc)
            fh.seek(0)
            fh.truncate()
            text = pformat(state)
            fh.write(text.encode("utf-8") if "b" in mode else text)
    finally:
        fh.flush()
        fh.close()
    return path
