"""Time helpers (Kombu's ``kombu.utils.time``)."""

from __future__ import annotations

__all__ = ["maybe_s_to_ms"]


def maybe_s_to_ms(v: float | None) -> int | None:
    """Seconds to whole milliseconds; ``None`` stays ``None``."""
    return None if v is None else int(float(v) * 1000.0)
