"""The event-loop conformance tests, importable here as well; they live in
:mod:`kombu_like.testing.conformance.eventloop`."""

from __future__ import annotations

from .conformance.eventloop import EventLoopTests

__all__ = ["EventLoopTests"]
