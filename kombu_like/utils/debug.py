"""Debug logging helpers (Kombu's ``kombu.utils.debug``)."""

from __future__ import annotations

import logging
from functools import wraps
from typing import Any

from ..log import get_logger

__all__ = ["Logwrapped", "setup_logging"]


def setup_logging(loglevel: int | None = logging.DEBUG, loggers: list[str] | None = None) -> None:
    """Send the named loggers (the connection's by default) to stderr at ``loglevel``."""
    for name in loggers or ["kombu_like.connection", "kombu_like.channel"]:
        logger = get_logger(name)
        logger.addHandler(logging.StreamHandler())
        logger.setLevel(loglevel or logging.DEBUG)


class Logwrapped:
    """Proxy that logs every method call made on ``instance`` (at DEBUG)."""

    def __init__(self, instance: Any, logger: Any = None, ident: str | None = None) -> None:
        self.instance = instance
        self.logger = get_logger(logger or __name__)
        self.ident = ident

    def __getattr__(self, key: str) -> Any:
        meth = getattr(self.instance, key)
        if not callable(meth):
            return meth

        @wraps(meth)
        def logged(*args: Any, **kwargs: Any) -> Any:
            prefix = self.ident.format(self.instance) if self.ident else ""
            arguments = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
            self.logger.debug("%s%s(%s)", prefix, getattr(meth, "__name__", key), ", ".join(arguments))
            return meth(*args, **kwargs)

        return logged

    def __enter__(self) -> Logwrapped:
        self.instance.__enter__()
        return self

    def __exit__(self, *exc_info: Any) -> Any:
        return self.instance.__exit__(*exc_info)

    def __repr__(self) -> str:
        return repr(self.instance)

    def __dir__(self) -> list[str]:
        return dir(self.instance)
