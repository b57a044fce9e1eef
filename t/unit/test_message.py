"""Message: acknowledgement states, decoding, compression, logging helpers."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from unittest.mock import Mock

import pytest

import kombu_like.message as message_module
from kombu_like import Connection, Message, Queue
from kombu_like.exceptions import ConnectionError, ContentDisallowed, DecodeError, MessageStateError


def make_message(body: bytes = b'{"a": 1}', **kwargs: object) -> tuple[Message, Mock]:
    channel = Mock(name="channel", spec=["basic_ack", "basic_reject"])
    kwargs.setdefault("content_type", "application/json")
    kwargs.setdefault("content_encoding", "utf-8")
    message = Message(body=body, delivery_tag=17, channel=channel, **kwargs)  # type: ignore[arg-type]
    return message, channel


class TestAcknowledgement:
    def test_initial_state(self) -> None:
        message, _ = make_message()
        assert message.state == "RECEIVED"
        assert not message.acknowledged

    def test_ack(self) -> None:
        message, channel = make_message()
        message.ack()
        channel.basic_ack.assert_called_once_with(17, multiple=False)
        assert message.state == "ACK"
        assert message.acknowledged

    def test_ack_multiple(self) -> None:
        message, channel = make_message()
        message.ack(multiple=True)
        channel.basic_ack.assert_called_once_with(17, multiple=True)

    def test_reject(self) -> None:
        message, channel = make_message()
        message.reject()
        channel.basic_reject.assert_called_once_with(17, requeue=False)
        assert message.state == "REJECTED"
        assert message.acknowledged

    def test_reject_requeue(self) -> None:
        message, channel = make_message()
        message.reject(requeue=True)
        channel.basic_reject.assert_called_once_with(17, requeue=True)
        assert message.state == "REJECTED"

    def test_requeue(self) -> None:
        message, channel = make_message()
        message.requeue()
        channel.basic_reject.assert_called_once_with(17, requeue=True)
        assert message.state == "REQUEUED"
        assert message.acknowledged

    @pytest.mark.parametrize("first", ["ack", "reject", "requeue"])
    @pytest.mark.parametrize("second", ["ack", "reject", "requeue"])
    def test_second_acknowledgement_raises(self, first: str, second: str) -> None:
        message, channel = make_message()
        getattr(message, first)()
        with pytest.raises(MessageStateError, match="already acknowledged"):
            getattr(message, second)()
        assert channel.basic_ack.call_count + channel.basic_reject.call_count == 1

    def test_message_state_error_attribute(self) -> None:
        assert Message.MessageStateError is MessageStateError

    @pytest.mark.parametrize("action", ["ack", "reject", "requeue"])
    def test_without_channel_raises(self, action: str) -> None:
        message = Message(body=b"x")
        with pytest.raises(MessageStateError, match="channel"):
            getattr(message, action)()

    def test_failed_ack_leaves_message_unacknowledged(self) -> None:
        message, channel = make_message()
        channel.basic_ack.side_effect = ConnectionError("gone")
        with pytest.raises(ConnectionError):
            message.ack()
        assert not message.acknowledged


class TestLogErrorHelpers:
    def test_ack_log_error_logs_listed_errors(self, caplog: pytest.LogCaptureFixture) -> None:
        message, channel = make_message()
        channel.basic_ack.side_effect = ConnectionError("connection lost")
        logger = logging.getLogger("t.ack")
        with caplog.at_level(logging.CRITICAL, logger="t.ack"):
            message.ack_log_error(logger, (ConnectionError,))
        assert any("Couldn't ack" in r.getMessage() and "17" in r.getMessage() for r in caplog.records)

    def test_ack_log_error_succeeds_quietly(self, caplog: pytest.LogCaptureFixture) -> None:
        message, channel = make_message()
        message.ack_log_error(logging.getLogger("t.ack"), (ConnectionError,))
        channel.basic_ack.assert_called_once()
        assert message.acknowledged
        assert not caplog.records

    def test_ack_log_error_raises_other_errors(self) -> None:
        message, channel = make_message()
        channel.basic_ack.side_effect = ValueError("not listed")
        with pytest.raises(ValueError):
            message.ack_log_error(logging.getLogger("t.ack"), (ConnectionError,))

    def test_reject_log_error(self, caplog: pytest.LogCaptureFixture) -> None:
        message, channel = make_message()
        channel.basic_reject.side_effect = ConnectionError("connection lost")
        logger = logging.getLogger("t.reject")
        with caplog.at_level(logging.CRITICAL, logger="t.reject"):
            message.reject_log_error(logger, (ConnectionError,), requeue=True)
        channel.basic_reject.assert_called_once_with(17, requeue=True)
        assert any("Couldn't reject" in r.getMessage() for r in caplog.records)


class TestDecoding:
    def test_payload_and_decode(self) -> None:
        message, _ = make_message(b'{"a": [1, 2]}')
        assert message.decode() == {"a": [1, 2]}
        assert message.payload == {"a": [1, 2]}

    def test_decode_is_cached(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: list[bytes] = []
        real_loads = message_module.loads

        def counting_loads(body: bytes, *args: object, **kwargs: object) -> object:
            calls.append(body)
            return real_loads(body, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(message_module, "loads", counting_loads)
        message, _ = make_message(b'{"a": 1}')
        first = message.payload
        assert message.decode() is first
        assert message.payload is first
        assert len(calls) == 1

    def test_malformed_body_raises_decode_error(self) -> None:
        message, _ = make_message(b"{not json")
        with pytest.raises(DecodeError):
            message.decode()
        assert not message.acknowledged

    def test_accept_refuses_other_content(self) -> None:
        message, _ = make_message(b"a: 1", content_type="application/x-yaml", accept={"application/json"})
        with pytest.raises(ContentDisallowed, match="application/x-yaml"):
            message.decode()

    def test_accept_allows_listed_content(self) -> None:
        message, _ = make_message(b"a: 1", content_type="application/x-yaml", accept={"application/x-yaml"})
        assert message.decode() == {"a": 1}

    def test_disabled_content_refused_without_accept(self) -> None:
        message, _ = make_message(b"a: 1", content_type="application/x-yaml")
        with pytest.raises(ContentDisallowed):
            message.decode()

    def test_binary_content_returned_as_bytes(self) -> None:
        message, _ = make_message(b"\x00\xff", content_type="application/data", content_encoding="binary")
        assert message.decode() == b"\x00\xff"

    def test_compressed_body_is_decompressed(self) -> None:
        message, _ = make_message(zlib.compress(b'{"z": 1}'), headers={"compression": "application/x-gzip"})
        assert message.body == b'{"z": 1}'
        assert message.payload == {"z": 1}

    def test_corrupt_compressed_body_raises_on_decode(self) -> None:
        message, _ = make_message(b"not zlib data", headers={"compression": "application/x-gzip"})
        assert message.errors
        with pytest.raises(DecodeError):
            message.decode()

    def test_text_body_is_encoded(self) -> None:
        message = Message(body="h\u00e9", content_type="text/plain", postencode="utf-8")
        assert message.body == "h\u00e9".encode()


class TestAttributes:
    def test_defaults(self) -> None:
        message = Message(body=b"x")
        assert message.headers == {}
        assert message.properties == {}
        assert message.delivery_info == {}
        assert message.channel is None
        assert not message.redelivered

    def test_redelivered(self) -> None:
        assert Message(body=b"x", delivery_info={"redelivered": True}).redelivered
        assert not Message(body=b"x", delivery_info={"redelivered": False}).redelivered

    def test_repr(self) -> None:
        message, _ = make_message(b"secret body", delivery_info={"exchange": "ex", "routing_key": "rk"})
        text = repr(message)
        assert "'state': 'RECEIVED'" in text
        assert "'content_type': 'application/json'" in text
        assert "'delivery_tag': 17" in text
        assert "'body_length': 11" in text
        assert "'exchange': 'ex'" in text and "'routing_key': 'rk'" in text
        assert "secret body" not in text


class TestOnBroker:
    def test_received_message_fields(self, conn: Connection, collect: Callable[..., list[Message]]) -> None:
        queue = Queue("msg_fields")
        conn.Producer().publish({"k": 1}, routing_key="msg_fields", declare=[queue], headers={"h": 1})
        [message] = collect(conn, queue)
        assert message.channel is not None
        assert message.delivery_tag is not None
        assert message.headers["h"] == 1
        assert message.properties["delivery_info"]["routing_key"] == "msg_fields"
        assert message.delivery_info["routing_key"] == "msg_fields"

    def test_ack_on_no_ack_consumer_is_a_no_op(self, conn: Connection) -> None:
        queue = Queue("msg_no_ack")
        conn.Producer().publish(1, routing_key="msg_no_ack", declare=[queue])
        got: list[Message] = []
        with conn.Consumer([queue], no_ack=True, on_message=got.append):
            conn.drain_events(timeout=5)
            got[0].ack()
            got[0].ack()
        conn.release()
        assert Queue("msg_no_ack")(conn).get() is None
