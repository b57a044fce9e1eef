"""A consumer driven by Kombu's event loop, written for Kombu.

It runs unchanged on Kombu and, under the import alias, on kombu_like::

    python hub_consume.py amqp://guest:guest@localhost// hub-example
    python -m kombu_like.alias hub_consume.py amqp://guest:guest@localhost// hub-example

The connection is registered with the hub before anything else, and the message is
published on that same connection: the hub alone must then deliver it.
"""

import sys

from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.asynchronous import Hub

url = sys.argv[1] if len(sys.argv) > 1 else "amqp://"
name = sys.argv[2] if len(sys.argv) > 2 else "hub-example"

hub = Hub()
exchange = Exchange(name, type="direct", auto_delete=True)
queue = Queue(name, exchange, routing_key=name, auto_delete=True)


def on_message(message):
    print("received:", message.payload)
    message.ack()
    hub.stop()  # one message is all this program waits for


def give_up():
    print("nothing received")
    hub.stop()


conn = Connection(url)
conn.register_with_event_loop(hub)
with Consumer(conn, [queue], on_message=on_message):
    Producer(conn).publish("hello world", exchange=exchange, routing_key=name)
    print("sent")
    hub.call_later(10, give_up)
    hub.run_forever()
conn.release()
hub.close()
