"""A consumer process for the kill -9 test: ``python amqp_consumer_proc.py URL QUEUE ACKS``.

It takes 20 messages with prefetch 20, acknowledges the first ACKS of them, holds the
rest unacknowledged, prints ``holding acked=... held=...`` and waits to be killed.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import Any

from kombu_like import Connection, Consumer, Message, Queue

TOTAL = 20


def main(url: str, queue_name: str, acks: int) -> int:
    acked: list[int] = []
    held: list[int] = []

    def on_message(body: Any, message: Message) -> None:
        if len(acked) < acks:
            message.ack()
            acked.append(body["n"])
        else:
            held.append(body["n"])

    conn = Connection(url)
    queue = Queue(queue_name, durable=False)
    consumer = Consumer(conn, [queue], callbacks=[on_message], prefetch_count=TOTAL)
    consumer.consume()
    deadline = time.monotonic() + 30
    while len(acked) + len(held) < TOTAL and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=1)
        except socket.timeout:
            pass
    # a round trip on the consuming channel: the broker has handled the acks before it
    consumer.qos(prefetch_count=TOTAL)
    print(f"holding acked={','.join(map(str, acked))} held={','.join(map(str, held))}", flush=True)
    time.sleep(120)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
