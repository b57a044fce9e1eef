"""Text helpers (Kombu's ``kombu.utils.text``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from difflib import SequenceMatcher
from typing import NamedTuple

__all__ = ["escape_regex", "fmatch_best", "fmatch_iter", "version_string_as_tuple"]


class version_info_t(NamedTuple):  # noqa: N801 - Kombu's public name
    """A parsed version: ``major.minor.micro`` plus pre-release level and serial."""

    major: int
    minor: int
    micro: int
    releaselevel: str
    serial: str


def escape_regex(p: str, white: str = "") -> str:
    """Backslash-escape every character of ``p`` that is not alphanumeric or in ``white``."""
    return "".join(c if c.isalnum() or c in white else ("\\000" if c == "\000" else "\\" + c) for c in p)


def fmatch_iter(needle: str, haystack: Iterable[str], min_ratio: float = 0.6) -> Iterator[tuple[float, str]]:
    """``(ratio, key)`` for every key of ``haystack`` similar enough to ``needle``."""
    for key in haystack:
        ratio = SequenceMatcher(None, needle, key).ratio()
        if ratio >= min_ratio:
            yield ratio, key


def fmatch_best(needle: str, haystack: Iterable[str], min_ratio: float = 0.6) -> str | None:
    """The key of ``haystack`` most similar to ``needle`` (``None`` if none is close)."""
    matches = sorted(fmatch_iter(needle, haystack, min_ratio), reverse=True)
    return matches[0][1] if matches else None


def version_string_as_tuple(s: str) -> version_info_t:
    """``"5.7.0rc1-2"`` -> ``version_info_t(5, 7, 0, "rc1", "2")``."""
    parts = s.split(".")
    major = int(parts[0])
    minor = int(parts[1]) if len(parts) > 1 else 0
    micro_text = parts[2] if len(parts) > 2 else "0"
    level = parts[3] if len(parts) > 3 else ""
    serial = parts[4] if len(parts) > 4 else ""
    digits = len(micro_text) - len(micro_text.lstrip("0123456789"))
    micro = int(micro_text[:digits] or 0)
    if digits < len(micro_text):
        level = micro_text[digits:]
    if not serial and "-" in level:
        level, serial = level.split("-", 1)
    return version_info_t(major, minor, micro, level, serial)
