"""Logging helpers (Kombu's ``kombu.log``)."""

from __future__ import annotations

import logging
import numbers
import os
import sys
from collections.abc import Callable, Iterator
from logging.handlers import WatchedFileHandler
from typing import Any

from .utils.encoding import safe_repr, safe_str
from .utils.functional import maybe_evaluate
from .utils.objects import cached_property

__all__ = ["LOG_LEVELS", "Log", "LogMixin", "get_logger", "get_loglevel", "setup_logging"]

#: level name -> number and number -> name
LOG_LEVELS: dict[Any, Any] = dict(logging._nameToLevel)
LOG_LEVELS.update(logging._levelToName)
LOG_LEVELS.setdefault("FATAL", logging.FATAL)
LOG_LEVELS.setdefault(logging.FATAL, "FATAL")

# some deployments strip tracebacks from logs (they may contain message contents)
DISABLE_TRACEBACKS = os.environ.get("DISABLE_TRACEBACKS")


def get_logger(logger: str | logging.Logger) -> logging.Logger:
    """The logger named ``logger`` (or ``logger`` itself), never without a handler.

    A :class:`logging.NullHandler` is added to a logger that has none, so a library
    logging before the program configured logging prints nothing instead of a warning.
    """
    if isinstance(logger, str):
        logger = logging.getLogger(logger)
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def get_loglevel(level: str | int) -> int:
    """``"INFO"`` -> ``20``; numbers are returned as they are."""
    if isinstance(level, str):
        return int(LOG_LEVELS[level])
    return level


def naive_format_parts(fmt: str) -> Iterator[str | None]:
    """The conversion character of each ``%`` placeholder in ``fmt`` (``None`` for ``%%``)."""
    parts = fmt.split("%")
    for i, part in enumerate(parts[1:]):
        yield None if not part or not parts[i - 1] else part[0]


def safeify_format(fmt: str, args: list[Any], filters: dict[str, Callable[[Any], str]] | None = None) -> Iterator[Any]:
    """``args`` with ``%s``/``%r`` arguments turned into text that cannot fail to format."""
    filters = filters or {"s": safe_str, "r": safe_repr}
    for index, kind in enumerate(naive_format_parts(fmt)):
        convert = filters.get(kind or "")
        yield convert(args[index]) if convert else args[index]


class LogMixin:
    """Adds ``debug``/``info``/``warn``/``error``/``critical`` methods logging to
    :attr:`logger` with the class name as prefix."""

    def debug(self, *args: Any, **kwargs: Any) -> Any:
        return self.log(logging.DEBUG, *args, **kwargs)

    def info(self, *args: Any, **kwargs: Any) -> Any:
        return self.log(logging.INFO, *args, **kwargs)

    def warn(self, *args: Any, **kwargs: Any) -> Any:
        return self.log(logging.WARNING, *args, **kwargs)

    def error(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("exc_info", True)
        return self.log(logging.ERROR, *args, **kwargs)

    def critical(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("exc_info", True)
        return self.log(logging.CRITICAL, *args, **kwargs)

    def annotate(self, text: str) -> str:
        return f"{self.logger_name} - {text}"

    def log(self, severity: int, *args: Any, **kwargs: Any) -> Any:
        if DISABLE_TRACEBACKS:
            kwargs.pop("exc_info", None)
        if not self.logger.isEnabledFor(severity):
            return None
        if len(args) > 1 and isinstance(args[0], str):
            values = [maybe_evaluate(arg) for arg in args[1:]]
            fmt = args[0]
            return self.logger.log(
                severity, self.annotate(fmt.replace("%r", "%s")), *safeify_format(fmt, values), **kwargs
            )
        return self.logger.log(severity, self.annotate(" ".join(map(safe_str, args))), **kwargs)

    def get_logger(self) -> logging.Logger:
        return get_logger(self.logger_name)

    def is_enabled_for(self, level: str | int) -> bool:
        return self.logger.isEnabledFor(self.get_loglevel(level))

    def get_loglevel(self, level: str | int) -> int:
        if not isinstance(level, numbers.Integral):
            return int(LOG_LEVELS[level])
        return int(level)

    @cached_property
    def logger(self) -> logging.Logger:
        return self.get_logger()

    @property
    def logger_name(self) -> str:
        return type(self).__name__


class Log(LogMixin):
    """A :class:`LogMixin` logging under ``name`` (to ``logger`` if given)."""

    def __init__(self, name: str, logger: logging.Logger | None = None) -> None:
        self._logger_name = name
        self._logger = logger

    def get_logger(self) -> logging.Logger:
        return self._logger or super().get_logger()

    @property
    def logger_name(self) -> str:
        return self._logger_name


def setup_logging(loglevel: str | int | None = None, logfile: Any = None) -> logging.Logger:
    """Give the root logger a handler (stderr or ``logfile``) unless it has one."""
    logger = logging.getLogger()
    level = get_loglevel(loglevel or "ERROR")
    target = logfile or sys.__stderr__
    if not logger.handlers:
        handler: logging.Handler
        if hasattr(target, "write"):
            handler = logging.StreamHandler(target)
        else:
            handler = WatchedFileHandler(str(target))
        logger.addHandler(handler)
        logger.setLevel(level)
    return logger
