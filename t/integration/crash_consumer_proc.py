"""A consumer process for the crash-recovery matrix.

``python crash_consumer_proc.py URL QUEUE COUNT OPTIONS_JSON``: consumes ``COUNT``
messages with a prefetch of ``COUNT``, acknowledges none of them, prints
``holding ids=... first=<time.time() of the first delivery>`` and waits to be killed.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

from kombu_like import Connection, Consumer, Message, Queue


def main(url: str, queue_name: str, count: int, options: dict[str, Any]) -> int:
    held: list[int] = []
    first_delivery: list[float] = []

    def on_message(body: Any, message: Message) -> None:
        if not first_delivery:
            first_delivery.append(time.time())
        held.append(body["id"])

    conn = Connection(url, transport_options=options)
    consumer = Consumer(conn, [Queue(queue_name, durable=False)], callbacks=[on_message], prefetch_count=count)
    consumer.consume()
    deadline = time.monotonic() + 30
    while len(held) < count and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=1)
        except socket.timeout:
            pass
    first = first_delivery[0] if first_delivery else 0.0
    print(f"holding ids={','.join(map(str, held))} first={first!r}", flush=True)
    time.sleep(120)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])))
