"""Kombu's ``pyamqp`` transport module: the ``amqp://`` transport under its other name.

``pyamqp://`` URLs and ``transport="pyamqp"`` already select
:mod:`kombu_like.transport.amqp`; this module gives code that imports from
``kombu.transport.pyamqp`` the same classes.
"""

from __future__ import annotations

from typing import Any

from ..message import Message as BaseMessage
from .amqp import DEFAULT_PORT, DEFAULT_SSL_PORT, Channel, SSLTransport, Transport
from .amqp.connection import AMQPConnection as Connection

__all__ = ["DEFAULT_PORT", "DEFAULT_SSL_PORT", "Channel", "Connection", "Message", "SSLTransport", "Transport"]


class Message(BaseMessage):
    """A :class:`~kombu_like.message.Message` made from a py-amqp message ``msg``."""

    def __init__(self, msg: Any, channel: Any = None, **kwargs: Any) -> None:
        props = msg.properties
        super().__init__(
            body=msg.body,
            channel=channel,
            delivery_tag=msg.delivery_tag,
            content_type=props.get("content_type"),
            content_encoding=props.get("content_encoding"),
            delivery_info=msg.delivery_info,
            properties=props,
            headers=props.get("application_headers") or {},
            **kwargs,
        )
