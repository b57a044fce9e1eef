"""A zstd decompression bomb, and the child process that consumes one and reports its peak memory."""

from __future__ import annotations

import functools
import os
import tempfile

__all__ = ["BOMB_SCRIPT", "zstd_bomb_file"]


@functools.cache
def zstd_bomb_file(size: int = 1 << 30) -> str:
    """A file holding ``size`` zero bytes compressed with zstd (about 32 KiB for 1 GiB)."""
    import zstandard

    path = os.path.join(tempfile.gettempdir(), f"kombu_like-zstd-bomb-{size}-{os.getpid()}.zst")
    chunk = bytes(1 << 20)
    with open(path, "wb") as out:
        writer = zstandard.ZstdCompressor(level=3).stream_writer(out, size=size, closefd=False)
        for _ in range(size // len(chunk)):
            writer.write(chunk)
        writer.flush(zstandard.FLUSH_FRAME)
    return path


# The child process that consumes a decompression bomb: it prints its peak RSS before and
# after, and what the consumer reported.
BOMB_SCRIPT = r"""
import json, resource, socket, sys, time, uuid
from kombu_like import Connection, Consumer, Producer, Queue

def peak_rss_kib():
    # VmHWM: the peak of this program's own memory; ru_maxrss would include the parent's
    # peak at fork time, which exec does not reset
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
url, options, path, content_type, queue_name = sys.argv[1:6]
options = json.loads(options)
bomb = open(path, "rb").read()
outcome = {}
with Connection(url, transport_options=options) as conn:
    queue = Queue(queue_name)
    queue(conn.default_channel).declare()
    Producer(conn).publish(bomb, routing_key=queue_name, content_type=content_type, content_encoding="utf-8",
                           headers={"compression": "application/zstd"})
    Producer(conn).publish({"after": 1}, routing_key=queue_name)
    del bomb
    before = peak_rss_kib()
    def on_error(message, exc):
        outcome["error"] = f"{type(exc).__name__}: {exc}"
        message.reject()
    def on_body(body, message):
        outcome["body"] = body
        message.ack()
    deadline = time.monotonic() + 60
    with Consumer(conn, [queue], callbacks=[on_body], on_decode_error=on_error, accept=["json"]):
        while "body" not in outcome and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except socket.timeout:
                pass
    outcome["rss_before_kib"] = before
    outcome["rss_peak_kib"] = peak_rss_kib()
    conn.default_channel.queue_delete(queue_name)
print(json.dumps(outcome))
"""
