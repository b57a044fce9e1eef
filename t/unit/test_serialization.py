"""Unit tests for kombu_like.serialization and kombu_like.utils.json."""

from __future__ import annotations

import json as stdlib_json
import pickle
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from importlib.metadata import EntryPoint
from typing import Any

import kombu.serialization
import kombu.utils.json
import pytest

from kombu_like import serialization
from kombu_like.exceptions import (
    ContentDisallowed,
    DecodeError,
    EncodeError,
    SerializerNotInstalled,
)
from kombu_like.serialization import (
    SerializerRegistry,
    disable_insecure_serializers,
    dumps,
    enable_insecure_serializers,
    loads,
    prepare_accept_content,
    raw_encode,
    register,
    registry,
    unregister,
)
from kombu_like.utils import json as kl_json

JSON = "application/json"
YAML = "application/x-yaml"
MSGPACK = "application/x-msgpack"
PICKLE = "application/x-python-serialize"


@pytest.fixture(autouse=True)
def restore_registry() -> Iterator[None]:
    """Give every test the global registry (and JSON type table) as it found them."""
    saved = {
        "_encoders": dict(registry._encoders),
        "_decoders": dict(registry._decoders),
        "type_to_name": dict(registry.type_to_name),
        "name_to_type": dict(registry.name_to_type),
        "_disabled_content_types": set(registry._disabled_content_types),
        "_plugins_tried": set(registry._plugins_tried),
    }
    default = registry._default_serializer
    scanned = registry._plugins_scanned
    json_encoders = dict(kl_json._encoders)
    json_decoders = dict(kl_json._decoders)
    protocol = serialization.pickle_protocol
    yield
    for attr, value in saved.items():
        current = getattr(registry, attr)
        current.clear()
        current.update(value)
    registry._default_serializer = default
    registry._plugins_scanned = scanned
    kl_json._encoders.clear()
    kl_json._encoders.update(json_encoders)
    kl_json._decoders.clear()
    kl_json._decoders.update(json_decoders)
    serialization.pickle_protocol = protocol


SAMPLE: dict[str, Any] = {
    "text": "héllo wörld ✓",
    "int": 42,
    "float": 1.5,
    "list": [1, "two", None, True],
    "nested": {"a": {"b": [False]}},
}


# -- defaults and built-ins -----------------------------------------------------------
def test_builtin_names_and_content_types_match_kombu() -> None:
    for name in ("json", "yaml", "msgpack", "pickle"):
        assert registry.name_to_type[name] == kombu.serialization.registry.name_to_type[name]
        content_type = registry.name_to_type[name]
        assert registry.type_to_name[content_type] == name
        assert registry._encoders[name] == (
            content_type,
            kombu.serialization.registry._encoders[name].content_encoding,
            registry._encoders[name].encoder,
        )


def test_default_serializer_is_json() -> None:
    assert registry.default_serializer == "json"
    content_type, encoding, payload = dumps(SAMPLE)
    assert (content_type, encoding) == (JSON, "utf-8")
    assert isinstance(payload, str)
    assert stdlib_json.loads(payload) == SAMPLE


def test_insecure_serializers_disabled_by_default_like_kombu() -> None:
    assert registry._disabled_content_types == {PICKLE, YAML, MSGPACK}
    assert registry._disabled_content_types == kombu.serialization.registry._disabled_content_types
    assert not registry.is_disabled("json")
    assert registry.is_disabled("pickle")


@pytest.mark.parametrize("name", ["json", "yaml", "msgpack", "pickle"])
def test_round_trip(name: str) -> None:
    content_type, encoding, payload = dumps(SAMPLE, serializer=name)
    assert content_type == registry.name_to_type[name]
    assert loads(payload, content_type, encoding, force=True) == SAMPLE
    assert loads(payload, content_type, encoding, accept=[content_type]) == SAMPLE


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
@pytest.mark.parametrize("name", ["json", "yaml", "msgpack", "pickle"])
def test_loads_accepts_buffers(name: str, wrap: Any) -> None:
    content_type, encoding, payload = dumps(SAMPLE, serializer=name)
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    assert loads(wrap(raw), content_type, encoding, force=True) == SAMPLE


def test_content_type_and_encoding_may_be_bytes() -> None:
    assert loads(b'{"a": 1}', JSON.encode(), b"UTF-8") == {"a": 1}


def test_msgpack_keeps_bytes_and_text_apart() -> None:
    content_type, encoding, payload = dumps({"b": b"\x00\xff", "s": "x"}, serializer="msgpack")
    assert encoding == "binary"
    assert loads(payload, content_type, encoding, force=True) == {"b": b"\x00\xff", "s": "x"}


def test_yaml_is_safe() -> None:
    evil = b"!!python/object/apply:os.system ['true']"
    with pytest.raises(DecodeError) as excinfo:
        loads(evil, YAML, "utf-8", force=True)
    assert YAML in str(excinfo.value)
    with pytest.raises(EncodeError):
        dumps(object(), serializer="yaml")


def test_pickle_uses_pickle_protocol() -> None:
    assert dumps(1, serializer="pickle")[2][:2] == b"\x80\x04"
    serialization.pickle_protocol = 2
    assert dumps(1, serializer="pickle")[2][:2] == b"\x80\x02"


def test_pickle_decoder_takes_text() -> None:
    payload = pickle.dumps("abc", protocol=0).decode("ascii")
    assert loads(payload, PICKLE, "binary", force=True) == "abc"


# -- dumps special cases --------------------------------------------------------------
def test_dumps_bytes_without_serializer_is_binary_data() -> None:
    assert dumps(b"\x00\x01") == ("application/data", "binary", b"\x00\x01")


def test_dumps_text_without_serializer_is_plain_text() -> None:
    assert dumps("héllo") == ("text/plain", "utf-8", "héllo".encode())


def test_dumps_text_with_serializer_serializes_it() -> None:
    assert dumps("x", serializer="json") == (JSON, "utf-8", '"x"')


def test_raw_encode() -> None:
    assert raw_encode("é") == ("application/data", "utf-8", "é".encode())
    assert raw_encode(b"\xff") == ("application/data", "binary", b"\xff")
    assert dumps("é", serializer="raw") == raw_encode("é")
    with pytest.raises(EncodeError):
        raw_encode("\ud800")


def test_dumps_unknown_serializer() -> None:
    with pytest.raises(SerializerNotInstalled, match="nosuch"):
        dumps(1, serializer="nosuch")


def test_encode_error_keeps_cause() -> None:
    with pytest.raises(EncodeError, match="json") as excinfo:
        dumps({"x": object()}, serializer="json")
    assert isinstance(excinfo.value.__cause__, TypeError)


def test_circular_value_is_named_as_such() -> None:
    looped: list[Any] = [1]
    looped.append({"again": looped})
    with pytest.raises(EncodeError, match="Circular reference"):
        dumps(looped, serializer="json")
    # the failed encoding leaves nothing behind that would spoil the next one
    assert dumps([looped[0], {"again": [1]}], serializer="json")[2] == '[1, {"again": [1]}]'


def test_deep_but_finite_nesting_is_encoded() -> None:
    value: Any = []
    for _ in range(200):
        value = [value]
    assert dumps(value, serializer="json")[2] == "[" * 201 + "]" * 201


def test_dumps_same_as_kombu() -> None:
    for name in ("json", "yaml", "msgpack", "pickle"):
        assert dumps(SAMPLE, serializer=name) == kombu.serialization.dumps(SAMPLE, serializer=name)
    for value in (b"\x00", "text", 1):
        assert dumps(value) == kombu.serialization.dumps(value)


# -- loads: accept, disabled, pass-through ---------------------------------------------
def test_disabled_content_is_refused_naming_the_type() -> None:
    payload = pickle.dumps(SAMPLE)
    with pytest.raises(ContentDisallowed) as excinfo:
        loads(payload, PICKLE, "binary")
    assert PICKLE in str(excinfo.value)
    assert "pickle" in str(excinfo.value)
    assert loads(payload, PICKLE, "binary", force=True) == SAMPLE


def test_accept_by_content_type() -> None:
    payload = dumps(SAMPLE, serializer="json")[2]
    assert loads(payload, JSON, "utf-8", accept={JSON}) == SAMPLE
    with pytest.raises(ContentDisallowed) as excinfo:
        loads(payload, JSON, "utf-8", accept={YAML})
    assert JSON in str(excinfo.value)
    assert "untrusted" in str(excinfo.value)


def test_accept_by_name_through_prepare_accept_content() -> None:
    payload = dumps(SAMPLE, serializer="msgpack")[2]
    accept = prepare_accept_content(["msgpack", JSON])
    assert accept == {MSGPACK, JSON}
    assert loads(payload, MSGPACK, "binary", accept=accept) == SAMPLE
    with pytest.raises(ContentDisallowed, match=PICKLE):
        loads(pickle.dumps(1), PICKLE, "binary", accept=accept)


def test_accept_names_given_to_loads_directly() -> None:
    assert loads(b"[1]", JSON, "utf-8", accept=["json"]) == [1]
    assert loads(b"[1]", JSON, "utf-8", accept=iter(["json"])) == [1]
    with pytest.raises(ContentDisallowed):
        loads(b"[1]", JSON, "utf-8", accept=["yaml"])


def test_accept_overrides_disabled_but_force_does_not_override_accept() -> None:
    payload = pickle.dumps(SAMPLE)
    assert loads(payload, PICKLE, "binary", accept=[PICKLE]) == SAMPLE
    with pytest.raises(ContentDisallowed):
        loads(payload, PICKLE, "binary", accept=[JSON], force=True)


def test_trusted_content_ignores_accept() -> None:
    assert loads(b"\x00\xff", "application/data", "binary", accept={JSON}) == b"\x00\xff"
    assert loads(b"abc", "application/text", "utf-8", accept={JSON}) == "abc"
    assert loads(b"abc", None, None, accept={JSON}) == "abc"
    with pytest.raises(ContentDisallowed):
        loads(b"abc", "application/data", "utf-8", accept={JSON}, _trusted_content=())


def test_unknown_content_type_passes_through() -> None:
    assert loads(b"\x00\xff", "application/x-unknown", "binary") == b"\x00\xff"
    assert loads(b"\x00\xff", "application/x-unknown", "ASCII-8BIT") == b"\x00\xff"
    assert loads("text", "application/x-unknown", "utf-8") == "text"
    assert loads("é".encode("latin-1"), "text/plain", "latin-1") == "é"
    with pytest.raises(ContentDisallowed, match="application/x-unknown"):
        loads(b"\x00", "application/x-unknown", "binary", accept={JSON})


def test_empty_payload_is_returned_as_is() -> None:
    assert loads(b"", JSON, "utf-8") == b""
    assert loads(None, JSON, "utf-8") is None
    with pytest.raises(ContentDisallowed):
        loads(b"", PICKLE, "binary")


@pytest.mark.parametrize(
    ("payload", "content_type", "encoding", "cause"),
    [
        (b"{not json", JSON, "utf-8", ValueError),
        (b'{"__type__": "nosuch", "__value__": 1}', JSON, "utf-8", ValueError),
        (b"\x80\x04garbage", PICKLE, "binary", Exception),
        (b"\xc1", MSGPACK, "binary", Exception),
        (b"a: [", YAML, "utf-8", Exception),
        (b"\xff\xfe\xfa", "text/plain", "utf-8", UnicodeDecodeError),
        (b"abc", "text/plain", "no-such-codec", LookupError),
    ],
)
def test_decode_error_names_content_type_and_keeps_cause(
    payload: bytes, content_type: str, encoding: str, cause: type[BaseException]
) -> None:
    with pytest.raises(DecodeError) as excinfo:
        loads(payload, content_type, encoding, force=True)
    assert content_type in str(excinfo.value)
    assert isinstance(excinfo.value.__cause__, cause)


# -- prepare_accept_content -----------------------------------------------------------
def test_prepare_accept_content() -> None:
    assert prepare_accept_content(None) is None
    assert prepare_accept_content([]) == set()
    assert prepare_accept_content(["json", "pickle", "application/x-custom"]) == {
        JSON,
        PICKLE,
        "application/x-custom",
    }
    assert prepare_accept_content(("json",)) == kombu.serialization.prepare_accept_content(("json",))


def test_prepare_accept_content_unknown_name() -> None:
    with pytest.raises(SerializerNotInstalled, match="nosuch"):
        prepare_accept_content(["json", "nosuch"])


def test_prepare_accept_content_custom_mapping() -> None:
    mapping = {"mine": "application/x-mine"}
    assert prepare_accept_content(["mine", "a/b"], mapping) == {"application/x-mine", "a/b"}
    with pytest.raises(SerializerNotInstalled, match="json"):
        prepare_accept_content(["json"], mapping)


# -- register / unregister ------------------------------------------------------------
def _rot13_encode(value: str) -> str:
    return value.translate(str.maketrans("abcdefghijklmnopqrstuvwxyz", "nopqrstuvwxyzabcdefghijklm"))


def _rot13_decode(value: bytes | str) -> str:
    text = value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value
    return _rot13_encode(text)


def test_register_and_unregister() -> None:
    register("rot13", _rot13_encode, _rot13_decode, "application/x-rot13")
    assert dumps("hello", serializer="rot13") == ("application/x-rot13", "utf-8", "uryyb")
    assert loads(b"uryyb", "application/x-rot13", "utf-8") == "hello"
    assert prepare_accept_content(["rot13"]) == {"application/x-rot13"}

    unregister("rot13")
    assert "rot13" not in registry.name_to_type
    assert "application/x-rot13" not in registry.type_to_name
    with pytest.raises(SerializerNotInstalled):
        dumps("hello", serializer="rot13")
    # With no decoder left, the payload is only decoded as text.
    assert loads(b"uryyb", "application/x-rot13", "utf-8") == "uryyb"


def test_unregister_unknown() -> None:
    with pytest.raises(SerializerNotInstalled, match="nosuch"):
        unregister("nosuch")


def test_encoder_only_and_decoder_only() -> None:
    reg = SerializerRegistry()
    reg.register("enc", str, None, "application/x-enc")
    reg.register("dec", None, int, "application/x-dec")
    assert reg.dumps(5, serializer="enc") == ("application/x-enc", "utf-8", "5")
    assert reg.loads(b"x", "application/x-enc", "utf-8") == "x"
    assert reg.loads(b"7", "application/x-dec", "utf-8") == 7
    with pytest.raises(SerializerNotInstalled):
        reg.dumps(5, serializer="dec")


def test_registries_share_no_state() -> None:
    first, second = SerializerRegistry(), SerializerRegistry()
    first.register("x", str, str, "application/x")
    first.disable("x")
    assert second.name_to_type == {} and second.type_to_name == {}
    assert second._encoders == {} and second._decoders == {}
    assert second._disabled_content_types == set()
    mutable = (dict, list, set)
    assert not [k for k, v in vars(SerializerRegistry).items() if isinstance(v, mutable)]


def test_default_serializer_can_be_changed() -> None:
    reg = SerializerRegistry()
    assert reg.default_serializer is None
    with pytest.raises(SerializerNotInstalled):
        reg.dumps({"a": 1})
    reg.register("json", kl_json.dumps, kl_json.loads, JSON)
    reg.register("pickle", pickle.dumps, pickle.loads, PICKLE, "binary")
    reg.default_serializer = "pickle"
    assert reg.dumps({"a": 1})[0] == PICKLE
    reg._set_default_serializer("json")
    assert reg.dumps({"a": 1})[0] == JSON
    with pytest.raises(SerializerNotInstalled, match="nosuch"):
        reg.default_serializer = "nosuch"


# -- enabling and disabling insecure serializers ---------------------------------------
def test_enable_insecure_serializers_default_choices() -> None:
    enable_insecure_serializers()
    assert registry._disabled_content_types == set()
    payload = pickle.dumps(SAMPLE)
    assert loads(payload, PICKLE, "binary") == SAMPLE


def test_enable_by_name_or_content_type_and_ignore_unknown() -> None:
    enable_insecure_serializers(["pickle", YAML, "nosuch", "application/x-nosuch"])
    assert registry._disabled_content_types == {MSGPACK}
    enable_insecure_serializers(None)
    assert registry._disabled_content_types == {MSGPACK}


def test_disable_insecure_serializers() -> None:
    enable_insecure_serializers()
    disable_insecure_serializers()
    assert registry._disabled_content_types == {PICKLE, YAML, MSGPACK}
    with pytest.raises(ContentDisallowed):
        loads(pickle.dumps(1), PICKLE, "binary")

    disable_insecure_serializers(allowed=["msgpack", PICKLE])
    assert registry._disabled_content_types == {JSON, YAML}
    with pytest.raises(ContentDisallowed, match=JSON):
        loads(b"1", JSON, "utf-8")

    disable_insecure_serializers(allowed=None)
    assert registry._disabled_content_types == {JSON, YAML, MSGPACK, PICKLE}


def test_disable_insecure_serializers_unknown_allowed_name() -> None:
    with pytest.raises(SerializerNotInstalled, match="nosuch") as excinfo:
        disable_insecure_serializers(allowed=["nosuch"])
    # Kombu raises KeyError here; code catching that keeps working.
    assert isinstance(excinfo.value, KeyError)
    assert str(excinfo.value) == "No encoder/decoder installed for nosuch"


def test_enable_disable_state_is_restored_between_tests() -> None:
    # Runs after the tests above changed the state: the fixture must have put it back.
    assert registry._disabled_content_types == {PICKLE, YAML, MSGPACK}


def test_package_exports_insecure_switches() -> None:
    import kombu_like

    assert kombu_like.enable_insecure_serializers is enable_insecure_serializers
    assert kombu_like.disable_insecure_serializers is disable_insecure_serializers


# -- optional packages ----------------------------------------------------------------
@pytest.mark.parametrize(("name", "module", "content_type"), [("msgpack", "msgpack", MSGPACK), ("yaml", "yaml", YAML)])
def test_missing_optional_package(monkeypatch: pytest.MonkeyPatch, name: str, module: str, content_type: str) -> None:
    payload = dumps([1], serializer=name)[2]
    monkeypatch.setitem(sys.modules, module, None)
    # found on first use and kept, as Kombu keeps what it imported when it registered it
    assert loads(payload, content_type, "binary", force=True) == [1]
    # registering again looks again: the package is missing now
    getattr(serialization, f"register_{name}")()
    hint = f'pip install "kombu_like[{name}]"'
    if name == "msgpack":
        with pytest.raises(SerializerNotInstalled) as excinfo:
            dumps([1], serializer=name)
        assert hint in str(excinfo.value)
        assert not isinstance(excinfo.value, EncodeError)
    with pytest.raises(SerializerNotInstalled) as excinfo:
        loads(payload, content_type, "binary", force=True)
    assert hint in str(excinfo.value)
    assert not isinstance(excinfo.value, DecodeError)
    # The name stays known, so accept lists naming it still work.
    assert prepare_accept_content([name]) == {content_type}


def test_optional_package_missing_at_first_use() -> None:
    code = (
        "import sys; sys.modules['msgpack'] = None\n"
        "from kombu_like.serialization import dumps\n"
        "try:\n    dumps([1], serializer='msgpack')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_root())
    assert out.stdout.startswith("SerializerNotInstalled ")
    assert 'pip install "kombu_like[msgpack]"' in out.stdout


def test_optional_packages_not_imported_at_import_time() -> None:
    code = (
        "import sys, kombu_like.serialization, kombu_like.compression;"
        "print(sorted(m for m in ('yaml', 'msgpack', 'zstandard', 'brotli') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_root())
    assert out.stdout.strip() == "[]"


def _root() -> str:
    import os

    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# -- entry points ---------------------------------------------------------------------
@pytest.fixture
def plugin_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("kombu_like_test_plugin")
    module.ROT13 = (_rot13_encode, _rot13_decode, "application/x-rot13", "utf-8")  # type: ignore[attr-defined]
    module.UPPER = {  # type: ignore[attr-defined]
        "encoder": str.upper,
        "decoder": lambda b: b.decode().lower(),
        "content_type": "application/x-upper",
    }
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch, plugin_module: types.ModuleType) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    group = "kombu_like.serializers"
    eps = [
        EntryPoint("rot13", f"{plugin_module.__name__}:ROT13", group),
        EntryPoint("upper", f"{plugin_module.__name__}:UPPER", group),
        EntryPoint("broken", "kombu_like_no_such_module:THING", group),
    ]

    def entry_points(**kwargs: Any) -> list[EntryPoint]:
        calls.append(kwargs)
        return [ep for ep in eps if ep.group == kwargs.get("group")]

    monkeypatch.setattr(serialization, "entry_points", entry_points)
    # other tests in the run may have scanned the real entry points already
    registry._plugins_scanned = False
    registry._plugins_tried.clear()
    return calls


def test_entry_points_are_not_scanned_until_needed(fake_entry_points: list[dict[str, Any]]) -> None:
    reg = SerializerRegistry()
    reg.register("json", kl_json.dumps, kl_json.loads, JSON)
    reg._set_default_serializer("json")
    reg.dumps({"a": 1})
    reg.loads(b"[]", JSON, "utf-8")
    assert fake_entry_points == []
    assert "rot13" not in reg.name_to_type


def test_entry_point_loaded_by_name(fake_entry_points: list[dict[str, Any]]) -> None:
    reg = SerializerRegistry()
    assert reg.dumps("hello", serializer="rot13") == ("application/x-rot13", "utf-8", "uryyb")
    assert fake_entry_points == [{"group": "kombu_like.serializers"}]
    assert "upper" not in reg.name_to_type
    reg.dumps("again", serializer="rot13")
    assert len(fake_entry_points) == 1


def test_entry_point_mapping_form(fake_entry_points: list[dict[str, Any]]) -> None:
    reg = SerializerRegistry()
    assert reg.dumps("hi", serializer="upper") == ("application/x-upper", "utf-8", "HI")
    assert reg.loads(b"HI", "application/x-upper", "utf-8") == "hi"


def test_entry_point_loaded_to_decode_unknown_content_type(fake_entry_points: list[dict[str, Any]]) -> None:
    reg = SerializerRegistry()
    assert reg.loads(b"uryyb", "application/x-rot13", "utf-8") == "hello"
    assert {"rot13", "upper"} <= set(reg.name_to_type)
    # The scan happens once; a broken plugin does not break decoding of other types.
    assert reg.loads(b"abc", "application/x-other", "utf-8") == "abc"
    assert len(fake_entry_points) == 1


def test_broken_entry_point(fake_entry_points: list[dict[str, Any]]) -> None:
    reg = SerializerRegistry()
    with pytest.raises(SerializerNotInstalled, match="broken") as excinfo:
        reg.dumps(1, serializer="broken")
    assert isinstance(excinfo.value.__cause__, ImportError)


def test_entry_point_through_global_helpers(fake_entry_points: list[dict[str, Any]]) -> None:
    assert prepare_accept_content(["rot13"]) == {"application/x-rot13"}
    assert dumps("hello", serializer="rot13")[2] == "uryyb"
    assert loads(b"uryyb", "application/x-rot13", "utf-8", accept=["rot13"]) == "hello"
    assert not registry.is_disabled("rot13")


def test_disable_insecure_serializers_covers_plugins(fake_entry_points: list[dict[str, Any]]) -> None:
    disable_insecure_serializers()
    assert registry.is_disabled("rot13")
    assert registry.is_disabled("upper")
    assert not registry.is_disabled("json")


def test_import_does_not_scan_entry_points() -> None:
    code = (
        "import importlib.metadata as md\n"
        "calls = []\n"
        "real = md.entry_points\n"
        "def spy(*a, **k):\n"
        "    calls.append(k.get('group'))\n"
        "    return real(*a, **k)\n"
        "md.entry_points = spy\n"
        "import kombu_like.serialization as s\n"
        "s.dumps({'a': 1}); s.loads(b'1', 'application/json', 'utf-8')\n"
        "print('kombu_like.serializers' in calls)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=_root())
    assert out.stdout.strip() == "False"


# -- JSON special types, and interop with Kombu ----------------------------------------
SPECIAL_VALUES: list[Any] = [
    datetime(2024, 2, 29, 23, 59, 58, 123456),
    datetime(2024, 2, 29, 23, 59, 58, tzinfo=timezone.utc),
    datetime(2024, 2, 29, 23, 59, 58, 7, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
    date(1999, 12, 31),
    time(12, 30, 15, 250),
    time(0, 0),
    Decimal("3.14159265358979323846264338327950288"),
    Decimal("-1E+3"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"plain utf-8 bytes \xc3\xa9",
    b"\x00\xff\xfe binary",
    b"",
]


@pytest.mark.parametrize("value", SPECIAL_VALUES, ids=repr)
def test_json_special_types_round_trip(value: Any) -> None:
    doc = {"v": value, "list": [value]}
    decoded = kl_json.loads(kl_json.dumps(doc))
    assert decoded == doc
    assert type(decoded["v"]) is type(value)


@pytest.mark.parametrize("value", SPECIAL_VALUES, ids=repr)
def test_json_same_wire_format_as_kombu(value: Any) -> None:
    doc = {"v": value}
    assert kl_json.dumps(doc) == kombu.utils.json.dumps(doc)


@pytest.mark.parametrize("value", SPECIAL_VALUES, ids=repr)
def test_json_kombu_like_to_kombu(value: Any) -> None:
    _, _, payload = dumps({"v": value}, serializer="json")
    decoded = kombu.utils.json.loads(payload)
    assert decoded == {"v": value}
    assert type(decoded["v"]) is type(value)
    assert kombu.serialization.loads(payload, JSON, "utf-8", accept=[JSON]) == {"v": value}


@pytest.mark.parametrize("value", SPECIAL_VALUES, ids=repr)
def test_json_kombu_to_kombu_like(value: Any) -> None:
    content_type, encoding, payload = kombu.serialization.dumps({"v": value}, serializer="json")
    decoded = loads(payload.encode(encoding), content_type, encoding, accept={JSON})
    assert decoded == {"v": value}
    assert type(decoded["v"]) is type(value)
    assert kl_json.loads(payload) == {"v": value}


def test_json_markers() -> None:
    encoded = stdlib_json.loads(
        kl_json.dumps([datetime(2020, 1, 2, 3, 4, 5), date(2020, 1, 2), Decimal("1.10"), b"ab", b"\xff"])
    )
    assert encoded == [
        {"__type__": "datetime", "__value__": "2020-01-02T03:04:05"},
        {"__type__": "date", "__value__": "2020-01-02"},
        {"__type__": "decimal", "__value__": "1.10"},
        {"__type__": "bytes", "__value__": "ab"},
        {"__type__": "base64", "__value__": "/w=="},
    ]
    assert stdlib_json.loads(kl_json.dumps(uuid.UUID(int=1))) == {
        "__type__": "uuid",
        "__value__": {"hex": "00000000000000000000000000000001"},
    }


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


def test_json_register_type() -> None:
    kl_json.register_type(Point, "point", lambda p: [p.x, p.y], lambda v: Point(*v))
    payload = kl_json.dumps({"p": Point(1, 2)})
    assert stdlib_json.loads(payload) == {"p": {"__type__": "point", "__value__": [1, 2]}}
    assert kl_json.loads(payload) == {"p": Point(1, 2)}
    # The json serializer picks registered types up too.
    assert loads(dumps(Point(3, 4))[2], JSON, "utf-8") == Point(3, 4)


def test_json_register_type_without_marker() -> None:
    kl_json.register_type(Point, None, lambda p: f"{p.x},{p.y}")
    assert kl_json.loads(kl_json.dumps([Point(1, 2)])) == ["1,2"]


def test_json_register_type_is_not_permanent() -> None:
    # The fixture restored the table after the tests above.
    with pytest.raises(EncodeError):
        dumps(Point(1, 2))


def test_json_dunder_json_reducer() -> None:
    class Money:
        def __json__(self) -> dict[str, Any]:
            return {"amount": "1.00", "currency": "EUR"}

    assert kl_json.loads(kl_json.dumps({"m": Money()})) == {"m": {"amount": "1.00", "currency": "EUR"}}


def test_json_unknown_marker_and_plain_dicts() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        kl_json.loads('{"__type__": "nosuch", "__value__": 1}')
    # Only the exact two-key envelope is special.
    doc = {"__type__": "date", "__value__": "2020-01-01", "other": 1}
    assert kl_json.loads(kl_json.dumps(doc)) == doc


def test_json_unserializable() -> None:
    with pytest.raises(TypeError):
        kl_json.dumps(object())


def test_json_dumps_passes_options() -> None:
    assert kl_json.dumps({"b": 1, "a": 2}, sort_keys=True) == '{"a": 2, "b": 1}'
    assert kl_json.dumps({"a": [1]}, default_kwargs={"separators": (",", ":")}) == '{"a":[1]}'
    assert kl_json.dumps({"a": 1}, default_kwargs={"indent": 2}, indent=None) == '{"a": 1}'


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_json_loads_buffers(wrap: Any) -> None:
    assert kl_json.loads(wrap('{"é": 1}'.encode())) == {"é": 1}


def test_json_loads_keeps_bytes_when_asked() -> None:
    seen: list[Any] = []

    def fake_loads(s: Any, object_hook: Any) -> Any:
        seen.append(s)
        return None

    kl_json.loads(b"{}", _loads=fake_loads, decode_bytes=False)
    assert seen == [b"{}"]
    # with the default decoder the bytes reach json.loads, which reads them, as Kombu's does
    assert kl_json.loads(b'{"a": [1]}', decode_bytes=False) == {"a": [1]}
    assert kombu.utils.json.loads(b'{"a": [1]}', decode_bytes=False) == {"a": [1]}


# -- wire interop of the other serializers ---------------------------------------------
@pytest.mark.parametrize("name", ["json", "yaml", "msgpack", "pickle"])
def test_serializers_interoperate_with_kombu(name: str) -> None:
    content_type, encoding, payload = dumps(SAMPLE, serializer=name)
    assert kombu.serialization.loads(payload, content_type, encoding, accept=[content_type]) == SAMPLE
    content_type, encoding, payload = kombu.serialization.dumps(SAMPLE, serializer=name)
    assert loads(payload, content_type, encoding, accept=[content_type]) == SAMPLE


def test_a_bytes_to_bytes_codec_as_content_encoding_does_not_decompress() -> None:
    # codecs.decode(body, "zlib_codec") would inflate the body with no size limit: a trusted
    # content type (application/data is always accepted) must not open that door
    import zlib

    from kombu_like.exceptions import DecodeError
    from kombu_like.serialization import registry as default_registry

    bomb = zlib.compress(bytes(8 << 20), 9)
    for codec_name in ("zlib_codec", "bz2_codec", "base64_codec", "rot13"):
        with pytest.raises(DecodeError, match="Cannot decode"):
            default_registry.loads(bomb, "application/data", codec_name, accept=["json"])


def test_a_content_encoding_that_decodes_in_quadratic_time_is_refused() -> None:
    from kombu_like.exceptions import DecodeError
    from kombu_like.serialization import registry as default_registry

    for name, body in (("punycode", b"bcher-kva"), ("idna", b"xn--bcher-kva.example")):
        with pytest.raises(DecodeError, match="quadratic"):
            default_registry.loads(body, "text/plain", name)


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1", "utf-32", "cp1252"])
def test_a_text_body_in_the_character_set_it_declares_is_decoded(encoding: str) -> None:
    # another client's JSON in UTF-16 or Latin-1, declared in content_encoding: Kombu's AMQP
    # transport hands the decoder text decoded with that character set (py-amqp does)
    from kombu_like.serialization import registry as default_registry

    body = '{"name": "caf\u00e9"}'.encode(encoding)
    assert default_registry.loads(body, "application/json", encoding) == {"name": "caf\u00e9"}
    assert default_registry.loads(body, "application/json", encoding.upper()) == {"name": "caf\u00e9"}


def test_a_binary_serializer_keeps_bytes_whatever_the_declared_encoding() -> None:
    import pickle

    from kombu_like.serialization import registry as default_registry

    body = pickle.dumps({"x": 1})
    assert default_registry.loads(body, "application/x-python-serialize", "latin-1", accept=["pickle"]) == {"x": 1}


def test_raw_refuses_a_body_it_cannot_send_as_it_is() -> None:
    import array

    for body in (None, 12, object(), {"a": 1}):
        with pytest.raises(EncodeError, match=type(body).__name__):
            dumps(body, serializer="raw")
    for body in (bytearray(b"x"), memoryview(b"y"), array.array("b", [1])):
        assert dumps(body, serializer="raw") == ("application/data", "binary", body)
