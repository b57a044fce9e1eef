"""Base classes of entities (Kombu's ``kombu.abstract``).

:class:`Object` is the base of :class:`~kombu_like.entity.MaybeChannelBound` (and so of
:class:`~kombu_like.Exchange` and :class:`~kombu_like.Queue`); frameworks test
``isinstance(obj, Object)`` to find objects they can turn into dicts with ``as_dict``.
"""

from __future__ import annotations

from .entity import MaybeChannelBound

__all__ = ["MaybeChannelBound", "Object"]

Object = MaybeChannelBound
