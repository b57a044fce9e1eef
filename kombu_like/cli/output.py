"""What the command prints: text with passwords masked, message records, the queue table."""

from __future__ import annotations

import base64
import re
import socket
from typing import TYPE_CHECKING, Any

from ..utils.url import url_to_parts

if TYPE_CHECKING:
    from ..message import Message


#: bytes of an undecodable body quoted in errors
PREVIEW_BYTES = 60

_URL_PASSWORD = re.compile(r"(\w[\w+.-]*://[^\s/@:]*:)([^\s/@]+)(@)")


def _passwords(url: str) -> list[str]:
    found = []
    for part in url.split(";"):
        try:
            password = url_to_parts(part).password
        except ValueError:
            continue
        if password:
            found.append(password)
    return found


def mask(text: str, url: str | None) -> str:
    """``text`` with every password of ``url`` (and of any URL in it) replaced by ``**``."""
    text = _URL_PASSWORD.sub(r"\1**\3", text)
    for password in _passwords(url or ""):
        text = text.replace(password, "**")
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _preview(raw: Any) -> str:
    data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")
    more = "..." if len(data) > PREVIEW_BYTES else ""
    return f"{data[:PREVIEW_BYTES]!r}{more}"


def message_record(message: Message, body: Any, queue: str) -> dict[str, Any]:
    """What ``consume`` prints for one message (one JSON document per line)."""
    properties = {k: v for k, v in (message.properties or {}).items() if k not in ("delivery_info",)}
    info = message.delivery_info or {}
    record: dict[str, Any] = {
        "queue": queue,
        "body": body,
        "headers": message.headers or {},
        "properties": properties,
        "content_type": message.content_type,
        "content_encoding": message.content_encoding,
        "delivery_info": {
            "exchange": info.get("exchange"),
            "routing_key": info.get("routing_key"),
            "redelivered": bool(info.get("redelivered")),
        },
    }
    if isinstance(body, bytes | bytearray):
        try:
            record["body"] = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            record["body"] = base64.b64encode(bytes(body)).decode("ascii")
            record["body_encoding"] = "base64"
    return record


def _table(rows: list[dict[str, Any]]) -> str:
    header = ("queue", "ready", "unacked")
    cells = [header] + [
        (str(r["name"]), str(r["ready"]), "-" if r["unacked"] is None else str(r["unacked"])) for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
        for row in cells
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, socket.timeout):
        return f"timed out: {exc}" if str(exc) else "timed out"
    text = str(exc) or type(exc).__name__
    return text
