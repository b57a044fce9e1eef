"""Client scenarios for the prefetch tests: held tasks and pool size changes by remote control."""

from __future__ import annotations

from typing import Any

from .celery_qos_app import app, held
from .celery_scenarios import TIMEOUT, shutdown, worker_loop

__all__ = ["collect", "inspect_counts", "pool_grow", "send_held", "shutdown", "worker_loop"]

_pending: dict[str, Any] = {}


def send_held(n: int, redis_url: str, started_key: str, release_key: str) -> list[str]:
    """Send ``n`` held tasks; their ids, for :func:`collect`."""
    results = [held.delay(redis_url, started_key, release_key, TIMEOUT) for _ in range(n)]
    _pending.update((r.id, r) for r in results)
    return [r.id for r in results]


def pool_grow(destination: str, n: int) -> list[Any]:
    """``celery control pool_grow n`` to one worker; its replies."""
    return list(app.control.pool_grow(n, destination=[destination], reply=True, timeout=2.0) or [])


def inspect_counts(destination: str) -> dict[str, int]:
    """How many requests the worker runs and holds reserved (prefetched, waiting for a process)."""
    inspect = app.control.inspect(destination=[destination], timeout=2.0)
    active = (inspect.active() or {}).get(destination)
    reserved = (inspect.reserved() or {}).get(destination)
    if active is None or reserved is None:
        raise TimeoutError(f"{destination} did not answer 'inspect active/reserved'")
    return {"active": len(active), "reserved": len(reserved)}


def collect(ids: list[str]) -> list[Any]:
    return [_pending.pop(i).get(timeout=TIMEOUT) for i in ids]
