"""The whole conformance suite, run on the toy transport, and a strict type check of it."""

from pathlib import Path

from mypy import api as mypy

from kombu_like.testing.conformance import TransportConformance
from kombu_like.transport import register_transport

register_transport("toy", "toy_transport:Transport")


class TestToyTransport(TransportConformance):
    url = "toy://"


def test_the_transport_type_checks_strictly() -> None:
    source = Path(__file__).with_name("toy_transport.py")
    # --follow-imports=silent: the transport is checked, not the library it imports
    stdout, stderr, status = mypy.run(["--strict", "--follow-imports=silent", "--no-incremental", str(source)])
    assert status == 0, stdout + stderr
