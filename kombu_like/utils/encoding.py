"""Text/bytes conversion that never raises on odd input (Kombu's ``kombu.utils.encoding``)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = [
    "bytes_to_str",
    "default_encode",
    "default_encoding",
    "ensure_bytes",
    "from_utf8",
    "get_default_encoding_file",
    "safe_repr",
    "safe_str",
    "set_default_encoding_file",
    "str_to_bytes",
]

# the stream whose encoding default_encoding() reports (set by programs that log to one)
_encoding_file: list[TextIO | None] = [None]


def set_default_encoding_file(file: TextIO | None) -> None:
    """Use ``file``'s encoding as the default encoding."""
    _encoding_file[0] = file


def __getattr__(name: str) -> Any:
    # Kombu's module global ``default_encoding_file``, kept current by set_default_encoding_file
    if name == "default_encoding_file":
        return _encoding_file[0]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_default_encoding_file() -> TextIO | None:
    """The file set by :func:`set_default_encoding_file` (``None`` by default)."""
    return _encoding_file[0]


def default_encoding(file: TextIO | None = None) -> str:
    """The encoding of ``file`` (or the default file), else the filesystem encoding."""
    file = file or get_default_encoding_file()
    return getattr(file, "encoding", None) or sys.getfilesystemencoding()


def str_to_bytes(s: Any) -> Any:
    """UTF-8 encode ``s`` if it is text; anything else is returned as is."""
    if isinstance(s, str):
        return s.encode()
    return s


def bytes_to_str(s: Any) -> Any:
    """UTF-8 decode ``s`` if it is bytes (undecodable bytes become U+FFFD)."""
    if isinstance(s, bytes):
        return s.decode(errors="replace")
    return s


def from_utf8(s: Any, *args: Any, **kwargs: Any) -> Any:
    """Kept for compatibility: text is already Unicode on Python 3."""
    return s


def ensure_bytes(s: Any) -> Any:
    """``s`` as bytes (text is UTF-8 encoded)."""
    if isinstance(s, bytes):
        return s
    return str_to_bytes(s)


def default_encode(obj: Any) -> Any:
    """Kept for compatibility: returns ``obj``."""
    return obj


def safe_str(s: Any, errors: str = "replace") -> str:
    """``str(s)`` that never raises: bytes are decoded, failures give a placeholder."""
    s = bytes_to_str(s)
    if isinstance(s, str):
        return s
    return safe_repr(s, errors)


def _describe_failure(o: Any, exc: BaseException) -> str:
    return f"<Unrepresentable {type(o)!r}: {exc!r}>"


def safe_repr(o: Any, errors: str = "replace") -> str:
    """``repr(o)`` that never raises."""
    try:
        return repr(o)
    except Exception as exc:
        try:
            return str(o)
        except Exception:
            return _describe_failure(o, exc)
