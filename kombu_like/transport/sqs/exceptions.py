"""Errors of the SQS transport, under Kombu's names (``kombu.transport.SQS.exceptions``).

Each is a subclass of the library's exception of the same kind, so code catching either
Kombu's SQS name or :class:`~kombu_like.exceptions.NotFound` /
:class:`~kombu_like.exceptions.AccessRefused` catches it.
"""

from __future__ import annotations

from ...exceptions import AccessRefused, ChannelError, NotFound

__all__ = [
    "AccessDeniedQueueException",
    "DoesNotExistQueueException",
    "InvalidQueueException",
    "UnableToSubscribeQueueToTopicException",
    "UnableToUnsubscribeQueueFromTopicException",
    "UndefinedExchangeException",
    "UndefinedQueueException",
]


class UndefinedQueueException(NotFound):
    """A queue that is not among ``predefined_queues`` (which are then the only ones)."""


class UndefinedExchangeException(ChannelError):
    """An exchange SQS cannot route (Kombu: a fanout exchange without an SNS topic)."""


class InvalidQueueException(ValueError):
    """A predefined queue whose name and URL disagree on being FIFO (``.fifo``)."""


class AccessDeniedQueueException(AccessRefused):
    """SQS refused access to a queue (credentials or IAM permissions)."""


class DoesNotExistQueueException(NotFound):
    """The queue does not exist in SQS."""


class UnableToSubscribeQueueToTopicException(ChannelError):
    """A queue could not be subscribed to an SNS topic."""


class UnableToUnsubscribeQueueFromTopicException(ChannelError):
    """A queue could not be unsubscribed from an SNS topic."""
