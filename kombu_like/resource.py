"""Generic resource pool (Kombu's ``kombu.resource``).

The implementation lives in :mod:`kombu_like.pools`; this module is the path Kombu
code imports it from.
"""

from __future__ import annotations

from .pools import Resource

__all__ = ["Resource"]
