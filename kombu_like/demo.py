"""A producer and a consumer on the in-memory transport, printing what went through.

``python -m kombu_like.demo [URL]`` (default ``memory://``).
"""

from __future__ import annotations

import socket
import sys

from . import Connection, Consumer, Exchange, Producer, Queue


def run(conn: Connection) -> int:
    """Publish three messages on ``conn`` and consume them again, printing each step."""
    media = Exchange("demo.media", type="direct")
    video = Queue("demo.video", media, routing_key="video")
    received: list[dict[str, object]] = []

    def handle(body: dict[str, object], message: object) -> None:
        print(f"consumed  {body}  (routing key {message.delivery_info['routing_key']!r})")  # type: ignore[attr-defined]
        received.append(body)
        message.ack()  # type: ignore[attr-defined]

    print(f"connected to {conn.as_uri()}")
    producer = Producer(conn)
    for i, name in enumerate(["intro.mp4", "talk.mp4", "outro.mp4"]):
        body = {"n": i, "name": name}
        producer.publish(
            body, exchange=media, routing_key="video", declare=[video], serializer="json", compression="zlib"
        )
        print(f"published {body}")
    with Consumer(conn, [video], accept=["json"], callbacks=[handle]):
        while len(received) < 3:
            try:
                conn.drain_events(timeout=5)
            except socket.timeout:
                print("no message arrived within 5 s", file=sys.stderr)
                return 1
    print(f"done: {len(received)} messages published and consumed")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    url = args[0] if args else "memory://"
    with Connection(url) as conn:
        conn.connect()  # a broker that refuses us fails here, before "connected to" is printed
        return run(conn)


if __name__ == "__main__":
    sys.exit(main())
