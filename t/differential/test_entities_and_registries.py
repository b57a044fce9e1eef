"""Entities and registry operations, on Kombu 5.7 and on kombu_like, compared.

Bindings go through ``as_dict``, queues through ``as_dict`` / ``Queue.from_dict``; the
serializer and compression registries through generated sequences of register / unregister /
enable / disable and dumps / loads / compress / decompress of generated values.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kombu
import kombu.compression
import kombu.serialization
import pytest
from hypothesis import given
from hypothesis import strategies as st

import kombu_like
import kombu_like.compression
import kombu_like.serialization

from .departures import exception_name
from .profiles import profile

LIBS = {"kombu": kombu, "kombu_like": kombu_like}

names = st.text("abcdefghij.-_:", min_size=0, max_size=10)


def observe(fn: Any) -> Any:
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("raised", exception_name(exc), {klass.__name__ for klass in type(exc).__mro__})


def same(theirs: Any, ours: Any) -> bool:
    """Equal outcomes; an exception of ours may be a subclass of Kombu's (a documented departure)."""
    if theirs[0] == ours[0] == "raised":
        return theirs[1] in ours[2]
    return bool(theirs == ours)


def plain(value: Any) -> Any:
    """Entities inside an as_dict() result, as their own as_dict() (recursively)."""
    if hasattr(value, "as_dict"):
        return {"__entity__": type(value).__name__, **plain(value.as_dict(recurse=True))}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def test_queue_from_another_queues_as_dict() -> None:
    seen = {}
    for lib, m in LIBS.items():
        queue = m.Queue("q", m.Exchange("x", type="topic"), routing_key="a.#", durable=False)
        flat = {k: v for k, v in queue.as_dict().items() if not hasattr(v, "as_dict") and k != "bindings"}
        again = m.Queue.from_dict("q", exchange="x", exchange_type="topic", **flat)
        seen[lib] = (again.name, again.routing_key, again.exchange.name, again.exchange.type)
    assert seen["kombu"] == seen["kombu_like"] == ("q", "a.#", "x", "topic")


@profile(examples=30)
@given(exchange=names, routing_key=names, arguments=st.none() | st.dictionaries(names, names, max_size=2))
def test_binding_as_dict(exchange: str, routing_key: str, arguments: dict[str, str] | None) -> None:
    def build(m: Any) -> Any:
        bound = m.binding(m.Exchange(exchange), routing_key=routing_key, arguments=arguments)
        return plain(bound.as_dict(recurse=True))

    seen = {lib: observe(lambda m=m: build(m)) for lib, m in LIBS.items()}
    assert same(seen["kombu"], seen["kombu_like"])


# -- registries ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
SERIALIZERS = ["json", "pickle", "yaml", "msgpack", "nonesuch"]
COMPRESSIONS = ["zlib", "bzip2", "lzma", "gzip", "zstd", "brotli", "nonesuch"]


@pytest.fixture
def registries() -> Iterator[None]:
    """Each test leaves both libraries' registries as it found them."""
    saved = []
    for module in (kombu.serialization, kombu_like.serialization):
        registry = module.registry
        saved.append(
            (
                registry,
                dict(registry._encoders),
                dict(registry._decoders),
                set(registry._disabled_content_types),
                dict(registry.type_to_name),
                dict(registry.name_to_type),
            )
        )
    yield
    for registry, encoders, decoders, disabled, t2n, n2t in saved:
        registry._encoders.clear()
        registry._encoders.update(encoders)
        registry._decoders.clear()
        registry._decoders.update(decoders)
        registry._disabled_content_types.clear()
        registry._disabled_content_types.update(disabled)
        registry.type_to_name.clear()
        registry.type_to_name.update(t2n)
        registry.name_to_type.clear()
        registry.name_to_type.update(n2t)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("dumps"), json_values, st.sampled_from(SERIALIZERS)),
        st.tuples(st.just("disable"), st.sampled_from(SERIALIZERS + ["application/json"])),
        st.tuples(st.just("enable"), st.sampled_from(SERIALIZERS + ["application/json"])),
        st.tuples(st.just("unregister"), st.sampled_from(SERIALIZERS)),
        st.tuples(st.just("register_upper")),
        st.tuples(st.just("compress"), st.binary(max_size=64), st.sampled_from(COMPRESSIONS)),
    ),
    min_size=1,
    max_size=6,
)


def apply(m: Any, op: tuple[Any, ...]) -> Any:
    ser = m.serialization
    if op[0] == "dumps":
        content_type, encoding, data = ser.dumps(op[1], serializer=op[2])
        return content_type, encoding, ser.loads(data, content_type, encoding, accept=None)
    if op[0] == "disable":
        return ser.disable_insecure_serializers(allowed=[]) if op[1] == "all" else ser.registry.disable(op[1])
    if op[0] == "enable":
        return ser.registry.enable(op[1])
    if op[0] == "unregister":
        return ser.registry.unregister(op[1])
    if op[0] == "register_upper":
        return ser.register(
            "upper", lambda s: str(s).upper(), lambda s: s, content_type="text/x-upper", content_encoding="utf-8"
        )
    compression = m.compression
    compressed, content_type = compression.compress(op[1], op[2])
    return content_type, compression.decompress(compressed, content_type)


@profile(examples=40)
@given(ops=operations)
def test_registry_operations(registries: None, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        seen = {lib: observe(lambda m=m, op=op: apply(m, op)) for lib, m in LIBS.items()}
        assert same(seen["kombu"], seen["kombu_like"]), op


@pytest.mark.parametrize("module", ["msgpack", "yaml"])
@pytest.mark.parametrize("hiding", ["import hook", "sys.modules"])
def test_registering_again_with_the_module_hidden(
    registries: None, monkeypatch: pytest.MonkeyPatch, module: str, hiding: str
) -> None:
    """``register_msgpack()``/``register_yaml()`` decide availability when called, as Kombu's do.

    Test suites hide a module by replacing ``builtins.__import__`` (Kombu's and Celery's
    ``mask_modules``) or with ``sys.modules[name] = None``; what each library then encodes and
    decodes is compared: before registering again (both keep what they had), after it
    (Kombu refuses to decode, and to encode msgpack), and after the module is visible again.
    """
    import builtins
    import sys

    serializer = module
    content_type, _, data = kombu.serialization.dumps({"a": [1, "x"]}, serializer=serializer)
    accept = [content_type]

    def codec(m: Any) -> tuple[Any, Any]:
        ser = m.serialization
        return (
            observe(lambda: ser.dumps({"b": 2}, serializer=serializer)),
            observe(lambda: ser.loads(data, content_type, "utf-8", accept=accept)),
        )

    def compare(stage: str) -> None:
        seen = {lib: codec(m) for lib, m in LIBS.items()}
        for theirs, ours in zip(seen["kombu"], seen["kombu_like"], strict=True):
            assert same(theirs, ours), (stage, seen)

    compare("visible")
    with monkeypatch.context() as hidden:
        if hiding == "sys.modules":
            hidden.setitem(sys.modules, module, None)
        else:
            real_import = builtins.__import__

            def masked(name: str, *args: Any, **kwargs: Any) -> Any:
                if name == module or name.startswith(f"{module}."):
                    raise ImportError(f"No module named {name!r}")
                return real_import(name, *args, **kwargs)

            hidden.setattr(builtins, "__import__", masked)
        compare("hidden, registered before")
        for m in LIBS.values():
            getattr(m.serialization, f"register_{module}")()
        compare("hidden, registered again")
    compare("visible again, registered while hidden")
    for m in LIBS.values():
        getattr(m.serialization, f"register_{module}")()
    compare("registered again while visible")
