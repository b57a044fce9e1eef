"""The whole conformance suite, run on the toy transport."""

from kombu_like.testing.conformance import TransportConformance
from kombu_like.transport import register_transport

register_transport("toy", "toy_transport:Transport")


class TestToyTransport(TransportConformance):
    url = "toy://"
