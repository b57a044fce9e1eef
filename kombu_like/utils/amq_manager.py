"""RabbitMQ management API client (Kombu's ``kombu.utils.amq_manager``)."""

from __future__ import annotations

from typing import Any

__all__ = ["get_manager"]


def get_manager(
    client: Any,
    hostname: str | None = None,
    port: int | None = None,
    userid: str | None = None,
    password: str | None = None,
) -> Any:
    """A ``pyrabbit.Client`` for the broker of ``client`` (a Connection).

    Values come from the arguments, then ``transport_options`` ``manager_<name>``, then the
    connection; the management port defaults to 15672.
    """
    try:
        import pyrabbit
    except ImportError as exc:
        raise ImportError("the RabbitMQ management client needs pyrabbit: pip install pyrabbit") from exc
    options = client.transport_options

    def pick(name: str, value: Any, default: Any) -> Any:
        if value is not None:
            return value
        return options.get(f"manager_{name}") or getattr(client, name, None) or default

    host = pick("hostname", hostname, "localhost")
    port = port if port is not None else options.get("manager_port", 15672)
    return pyrabbit.Client(f"{host}:{port}", pick("userid", userid, "guest"), pick("password", password, "guest"))
