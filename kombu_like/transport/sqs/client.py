"""Settings of the SQS transport and the boto3 clients it talks through.

boto3 is imported here, lazily, and nowhere else: credentials (including temporary ones
that refresh themselves), request signing, HTTP, and retrying throttled or failed requests
with backoff are all boto3's and botocore's work.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

from ..options import TransportOptions, option
from .codec import is_fifo

__all__ = ["Clients", "SQSOptions", "Settings", "import_boto3"]

DEFAULT_REGION = "us-east-1"
#: seconds a received message stays invisible to other consumers (Kombu's default)
DEFAULT_VISIBILITY_TIMEOUT = 1800
#: seconds one ReceiveMessage long poll waits for a message (SQS allows 0 to 20)
DEFAULT_WAIT_TIME_SECONDS = 10
#: seconds between polls when long polling is off
DEFAULT_POLLING_INTERVAL = 1.0
#: SQS's limit for one message and for one batch (since 2025; older queues may say less)
DEFAULT_MAX_MESSAGE_SIZE = 1_048_576
#: seconds an acknowledgement may wait to be deleted together with others
DEFAULT_ACK_FLUSH_INTERVAL = 0.2
#: botocore retries throttled and failed requests this many times, with backoff
DEFAULT_RETRIES = {"mode": "standard", "max_attempts": 4}
#: seconds a ReceiveMessage may take beyond its long-poll wait before it is given up on
#: (botocore's own read timeout is 60 s for every attempt, so an endpoint that stops
#: answering would hold ``drain_events(timeout=2)`` for minutes)
RECEIVE_READ_SLACK = 3.0

_EMPTY: Mapping[str, Any] = MappingProxyType({})


_loader_lock = threading.Lock()
_loader: Any = None


def boto3_session(**kwargs: Any) -> Any:
    """A new boto3 session (its own credential chain, as ``boto3.Session(**kwargs)``) that
    reads botocore's service models and endpoint data through one loader for the process.

    Reading and parsing those files is most of what making a client costs (about 150 ms a
    connection, against about 10 ms with the loader's cache shared); what they hold does
    not change while the process runs.
    """
    global _loader
    boto3 = import_boto3()
    import botocore.loaders
    import botocore.session

    if _loader is None:
        with _loader_lock:
            if _loader is None:
                _loader = botocore.loaders.create_loader()
    core = botocore.session.Session()
    core.register_component("data_loader", _loader)
    return boto3.Session(botocore_session=core, **kwargs)


def import_boto3() -> Any:
    """Import boto3, or say which extra installs it."""
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('the SQS transport needs boto3: pip install "kombu_like[sqs]"') from exc
    return boto3


def _number(options: Mapping[str, Any], name: str, default: float, low: float, high: float | None) -> float:
    value = options.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if number != number:
        raise ValueError(f"SQS transport option {name!r} must be a number, not {value!r}")
    if number < low or (high is not None and number > high):
        bounds = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ValueError(f"SQS transport option {name!r} must be {bounds}, not {value!r}")
    return number


def _mapping(options: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = options.get(name)
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise ValueError(f"SQS transport option {name!r} must be a dict, not {type(value).__name__}")
    return MappingProxyType(dict(value))


def _flag(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass
class SQSOptions(TransportOptions):
    """The ``transport_options`` of the SQS transport: Kombu's names and defaults, and two
    of its own (``max_message_size``, ``ack_flush_interval``)."""

    transport_name: ClassVar[str] = "SQS"

    region: str | None = option(None, "AWS region; default: boto3's configured region, else ``us-east-1``")
    queue_name_prefix: str = option("", 'prepended to every queue name (``"prod-"``)')
    predefined_queues: Mapping[str, Any] | None = option(
        None,
        '``{"name": {"url": ..., "access_key_id": ..., "secret_access_key": ..., "session_token": ..., '
        '"region": ...}}`` (all but ``url`` optional): the transport then never creates, lists or deletes '
        "queues, and a queue not in it raises NotFound",
    )
    visibility_timeout: float | None = option(
        None,
        f"seconds a received message stays invisible to other consumers (0 to 43200; default "
        f"{DEFAULT_VISIBILITY_TIMEOUT}); set on queues the transport creates and, when given, "
        f"asked for on every receive",
    )
    wait_time_seconds: float = option(
        DEFAULT_WAIT_TIME_SECONDS, "long polling: one ReceiveMessage waits up to this many seconds (0 to 20)"
    )
    polling_interval: float = option(
        DEFAULT_POLLING_INTERVAL, "seconds between polls when long polling is off (``wait_time_seconds=0``)"
    )
    sqs_base64_encoding: bool = option(True, "base64-encode message bodies in SQS, as Kombu does by default")
    is_secure: bool | None = option(None, "``https`` for an endpoint given in the URL")
    endpoint_url: str | None = option(None, "the endpoint, overriding the URL's host")
    client_config: Mapping[str, Any] | None = option(
        None,
        "keyword arguments of ``botocore.config.Config`` (timeouts, retries, proxies ...), over the "
        "transport's defaults",
        name="client-config",
    )
    creation_attributes: Mapping[str, Any] | None = option(
        None, "extra ``CreateQueue`` attributes for queues the transport creates", name="sqs-creation-attributes"
    )
    queue_tags: Mapping[str, Any] | None = option(None, "tags for queues the transport creates")
    fetch_message_attributes: Any = option(
        None,
        'extra system attributes to receive, a list or ``{"MessageSystemAttributeNames": [...]}`` '
        "(``ApproximateReceiveCount`` always is)",
    )
    max_message_size: int = option(
        DEFAULT_MAX_MESSAGE_SIZE, "largest message, in bytes, accepted for sending (lowered by a queue's own limit)"
    )
    ack_flush_interval: float = option(
        DEFAULT_ACK_FLUSH_INTERVAL, "seconds an acknowledgement may wait to be deleted together with others (0 to 60)"
    )


@dataclass(frozen=True)
class Settings:
    """The transport options, checked once when the transport is created."""

    region: str | None = None
    endpoint_url: str | None = None
    use_ssl: bool = True
    queue_name_prefix: str = ""
    predefined_queues: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT
    #: passed on every receive when the option was given, so it applies to existing queues
    receive_visibility_timeout: int | None = None
    wait_time_seconds: int = DEFAULT_WAIT_TIME_SECONDS
    polling_interval: float = DEFAULT_POLLING_INTERVAL
    base64_encoding: bool = True
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    ack_flush_interval: float = DEFAULT_ACK_FLUSH_INTERVAL
    client_config: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    creation_attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    queue_tags: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    system_attributes: tuple[str, ...] = ("ApproximateReceiveCount",)

    @classmethod
    def from_options(cls, options: Mapping[str, Any], hostname: str | None, port: int | None) -> Settings:
        """Read Kombu's SQS transport options (and the URL's host) into settings."""
        # types checked and unknown keys warned about; ranges are checked below
        SQSOptions.from_transport_options(options)
        is_secure = _flag(options.get("is_secure"))
        endpoint_url = options.get("endpoint_url") or None
        # ``sqs://`` leaves the host empty, which Connection reports as "localhost": only a
        # host other than that, or any host with a port, names an SQS-compatible endpoint
        if endpoint_url is None and hostname and (hostname != "localhost" or port):
            host = f"[{hostname}]" if ":" in hostname else hostname
            scheme = "https" if is_secure else "http"
            endpoint_url = f"{scheme}://{host}" + (f":{port}" if port else "")
        predefined = _mapping(options, "predefined_queues")
        for name, entry in predefined.items():
            if not isinstance(entry, Mapping) or not entry.get("url"):
                raise ValueError(f"predefined SQS queue {name!r} needs a 'url'")
            if is_fifo(str(entry["url"])) != is_fifo(name):
                from .exceptions import InvalidQueueException

                raise InvalidQueueException(
                    f"predefined SQS queue {name!r}: FIFO queues (and only they) are named '*.fifo', "
                    f"both in the name and in the URL {entry['url']!r}"
                )
        explicit_visibility = options.get("visibility_timeout")
        visibility = int(_number(options, "visibility_timeout", DEFAULT_VISIBILITY_TIMEOUT, 0, 43200))
        fetch = options.get("fetch_message_attributes")
        system: tuple[str, ...] = ("ApproximateReceiveCount",)
        if isinstance(fetch, Mapping):
            fetch = fetch.get("MessageSystemAttributeNames")
        if isinstance(fetch, list | tuple):
            system = tuple(dict.fromkeys([*system, *map(str, fetch)]))
        return cls(
            region=options.get("region") or None,
            endpoint_url=endpoint_url,
            use_ssl=True if is_secure is None else is_secure,
            queue_name_prefix=str(options.get("queue_name_prefix") or ""),
            predefined_queues=predefined,
            visibility_timeout=visibility,
            receive_visibility_timeout=visibility if explicit_visibility not in (None, "") else None,
            wait_time_seconds=int(_number(options, "wait_time_seconds", DEFAULT_WAIT_TIME_SECONDS, 0, 20)),
            polling_interval=_number(options, "polling_interval", DEFAULT_POLLING_INTERVAL, 0, None),
            base64_encoding=_flag(options.get("sqs_base64_encoding", True)) is not False,
            max_message_size=int(_number(options, "max_message_size", DEFAULT_MAX_MESSAGE_SIZE, 1024, None)),
            ack_flush_interval=_number(options, "ack_flush_interval", DEFAULT_ACK_FLUSH_INTERVAL, 0, 60),
            client_config=_mapping(options, "client-config"),
            creation_attributes=_mapping(options, "sqs-creation-attributes"),
            queue_tags=_mapping(options, "queue_tags"),
            system_attributes=system,
        )


class Clients:
    """boto3 SQS clients of one connection: the default one, and one per predefined queue
    that brings its own credentials."""

    def __init__(
        self,
        settings: Settings,
        access_key_id: str | None,
        secret_access_key: str | None,
        connect_timeout: float | None,
    ) -> None:
        import_boto3()  # says which extra installs it, before anything else is tried
        from botocore.config import Config

        self.settings = settings
        self._access_key_id = access_key_id or None
        self._secret_access_key = secret_access_key or None
        self.region: str = settings.region or boto3_session().region_name or DEFAULT_REGION
        config = Config(connect_timeout=connect_timeout or 5, retries=dict(DEFAULT_RETRIES))
        if settings.client_config:
            config = config.merge(Config(**settings.client_config))
        self.config = config
        # for the last acknowledgements sent while closing: one attempt with short timeouts,
        # so a connection to an unreachable endpoint closes in seconds, not minutes
        self.quick_config = config.merge(
            Config(connect_timeout=min(connect_timeout or 5, 5), read_timeout=5, retries={"total_max_attempts": 1})
        )
        self._lock = threading.Lock()
        #: "" (default), an SQS queue name (predefined with credentials); " quick" suffixed
        self._clients: dict[str, Any] = {}
        self._receive_attributes_param: str | None = None

    def _make(self, region: str, key: str | None, secret: str | None, token: str | None, quick: Any = False) -> Any:
        session = boto3_session(
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
        )
        if isinstance(quick, tuple):
            # a receive client: (seconds it waits, tried once)
            wait, once = quick
            config = self.config.merge(self._receive_config(wait, once))
        else:
            config = self.quick_config if quick else self.config
        kwargs: dict[str, Any] = {"use_ssl": self.settings.use_ssl, "config": config}
        if self.settings.endpoint_url:
            kwargs["endpoint_url"] = self.settings.endpoint_url
        return session.client("sqs", **kwargs)

    def default(self, quick: bool = False) -> Any:
        """The client for every queue without credentials of its own."""
        return self._cached("" if not quick else " quick", self.region, None, quick)

    def for_queue(self, sqs_name: str, quick: bool = False) -> Any:
        """The client for the SQS queue ``sqs_name`` (``quick``: one short attempt)."""
        entry = self._own_entry(sqs_name)
        if entry is None:
            return self.default(quick)
        region = str(entry.get("region") or self.region)
        return self._cached(sqs_name + (" quick" if quick else ""), region, entry, quick)

    def receiving(self, sqs_name: str, wait: int, once: bool) -> Any:
        """The client for a ReceiveMessage on ``sqs_name`` that long-polls ``wait`` seconds.

        Its read timeout is ``wait`` plus :data:`RECEIVE_READ_SLACK`, so an endpoint that
        stops answering in the middle of a wait is noticed then; ``once`` (the caller has a
        deadline): botocore does not try again, the error reaches ``drain_events``.
        """
        entry = self._own_entry(sqs_name)
        suffix = f" receive {wait} {'once' if once else 'retried'}"
        if entry is None:
            return self._cached(suffix, self.region, None, (wait, once))
        region = str(entry.get("region") or self.region)
        return self._cached(sqs_name + suffix, region, entry, (wait, once))

    def _receive_config(self, wait: int, once: bool) -> Any:
        from botocore.config import Config

        extra: dict[str, Any] = {"read_timeout": wait + RECEIVE_READ_SLACK}
        if once:
            extra["retries"] = {"total_max_attempts": 1}
        return Config(**extra)

    def _own_entry(self, sqs_name: str) -> Mapping[str, Any] | None:
        """The predefined queue entry of ``sqs_name`` when it brings its own credentials or region."""
        entry = self.settings.predefined_queues.get(sqs_name) if self.settings.predefined_queues else None
        if entry is None or not (entry.get("access_key_id") or entry.get("region")):
            return None
        return entry

    def _cached(self, key: str, region: str, entry: Mapping[str, Any] | None, quick: Any) -> Any:
        client = self._clients.get(key)
        if client is None:
            with self._lock:
                client = self._clients.get(key)
                if client is None:
                    entry = entry or {}
                    client = self._clients[key] = self._make(
                        region,
                        entry.get("access_key_id") or self._access_key_id,
                        entry.get("secret_access_key") or self._secret_access_key,
                        entry.get("session_token"),
                        quick,
                    )
        return client

    def receive_attributes_param(self) -> str:
        """``MessageSystemAttributeNames``, or ``AttributeNames`` on older botocore."""
        if self._receive_attributes_param is None:
            try:
                shape = self.default().meta.service_model.operation_model("ReceiveMessage").input_shape
            except Exception:  # the request that follows reports (and translates) the cause
                return "MessageSystemAttributeNames"
            members = getattr(shape, "members", {})
            self._receive_attributes_param = (
                "MessageSystemAttributeNames" if "MessageSystemAttributeNames" in members else "AttributeNames"
            )
        return self._receive_attributes_param

    def secrets(self) -> tuple[str, ...]:
        """Credential strings that must never appear in an error message."""
        found = [self._access_key_id, self._secret_access_key]
        for entry in self.settings.predefined_queues.values():
            found += [entry.get("access_key_id"), entry.get("secret_access_key"), entry.get("session_token")]
        return tuple(s for s in found if isinstance(s, str) and len(s) >= 4)

    def close(self) -> None:
        """Close the clients' HTTP connection pools."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            close = getattr(client, "close", None)
            if close is not None:
                close()
