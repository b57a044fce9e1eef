"""Unit tests for kombu_like.compression."""

from __future__ import annotations

import os
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import kombu.compression
import pytest
import zstandard

from kombu_like import compression
from kombu_like.compression import compress, decompress, encoders, get_decoder, get_encoder, register
from kombu_like.exceptions import DecodeError, EncodeError, SerializerNotInstalled

# Content type -> aliases, as defined by Kombu 5.7.
METHODS: dict[str, list[str]] = {
    "application/x-gzip": ["gzip", "zlib"],
    "application/x-bz2": ["bzip2", "bzip"],
    "application/x-lzma": ["lzma", "xz"],
    "application/zstd": ["zstd", "zstandard"],
    "application/x-brotli": ["brotli"],
}
NAMES = [name for content_type, aliases in METHODS.items() for name in [content_type, *aliases]]
BODIES = [b"", b"x", "héllo wörld ✓".encode() * 50, os.urandom(4096), bytes(range(256)) * 40]
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@pytest.fixture(autouse=True)
def restore_compression_registry() -> Iterator[None]:
    """Give every test the registry as it found it."""
    tables: list[dict[str, Any]] = [
        compression._aliases,
        compression._encoders,
        compression._decoders,
        compression._names,
        compression._probes,
    ]
    saved = [dict(table) for table in tables]
    compression._zstd_functions.cache_clear()
    yield
    for table, copy in zip(tables, saved, strict=True):
        table.clear()
        table.update(copy)
    compression._zstd_functions.cache_clear()


def _content_type(name: str) -> str:
    return next(ct for ct, aliases in METHODS.items() if name == ct or name in aliases)


# -- names ------------------------------------------------------------------------------
def test_all_methods_listed() -> None:
    assert set(encoders()) == set(METHODS)


@pytest.mark.parametrize("content_type", [ct for ct in METHODS if ct in kombu.compression.encoders()])
def test_names_match_kombu(content_type: str) -> None:
    kombu_aliases = sorted(a for a, ct in kombu.compression._aliases.items() if ct == content_type)
    assert kombu_aliases == sorted(METHODS[content_type])
    assert sorted(a for a, ct in compression._aliases.items() if ct == content_type) == kombu_aliases


def test_kombu_knows_the_always_available_methods() -> None:
    # Guards the table above against drifting from Kombu's names.
    assert {"application/x-gzip", "application/x-bz2", "application/x-lzma", "application/x-brotli"} <= set(
        kombu.compression.encoders()
    )


@pytest.mark.parametrize("name", NAMES)
def test_get_encoder_and_decoder(name: str) -> None:
    encoder, content_type = get_encoder(name)
    assert content_type == _content_type(name)
    assert callable(encoder)
    assert get_decoder(name)(encoder(b"data")) == b"data"


# -- round trips ------------------------------------------------------------------------
@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{len(b)}B")
@pytest.mark.parametrize("name", NAMES)
def test_round_trip(name: str, body: bytes) -> None:
    compressed, content_type = compress(body, name)
    assert content_type == _content_type(name)
    assert isinstance(compressed, bytes)
    assert decompress(compressed, name) == body
    assert decompress(compressed, content_type) == body


def test_compression_shrinks_repetitive_data() -> None:
    body = b"abcdefgh" * 10_000
    for content_type in METHODS:
        assert len(compress(body, content_type)[0]) < len(body) // 10


def test_compress_text_is_utf8() -> None:
    compressed, content_type = compress("héllo", "zlib")
    assert content_type == "application/x-gzip"
    assert zlib.decompress(compressed) == "héllo".encode()


@pytest.mark.parametrize("wrap", [bytearray, memoryview])
@pytest.mark.parametrize("name", list(METHODS))
def test_buffers(name: str, wrap: Callable[[bytes], object]) -> None:
    body = b"buffer body " * 20
    compressed, _ = compress(wrap(body), name)  # type: ignore[arg-type]
    assert decompress(wrap(compressed), name) == body  # type: ignore[arg-type]


def test_zlib_is_zlib_format_like_kombu() -> None:
    compressed, _ = compress(b"payload", "gzip")
    assert zlib.decompress(compressed) == b"payload"


def test_zstd_frames() -> None:
    first, _ = compress(b"first ", "zstd")
    second, _ = compress(b"second", "zstd")
    assert first.startswith(ZSTD_MAGIC)
    # A one-shot decoder needs the content size in the frame header.
    assert zstandard.ZstdDecompressor().decompress(first) == b"first "
    assert decompress(first + second, "zstd") == b"first second"
    streamer = zstandard.ZstdCompressor().compressobj()
    streamed = streamer.compress(b"no size in header") + streamer.flush()
    assert decompress(streamed, "zstd") == b"no size in header"


# -- interop with Kombu -----------------------------------------------------------------
def _kombu_zstd() -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    """Kombu's own zstd codec, or the reference decoder for the same frame format.

    Kombu 5.7 takes zstd from ``compression.zstd`` (Python 3.14+) or ``backports.zstd``;
    without them it has no zstd method at all, and frames are checked against zstandard's
    one-shot API instead, which reads the standard format Kombu writes.
    """
    if "application/zstd" in kombu.compression.encoders():
        encoder, _ = kombu.compression.get_encoder("application/zstd")
        return encoder, kombu.compression.get_decoder("application/zstd")
    return zstandard.ZstdCompressor().compress, zstandard.ZstdDecompressor().decompress


def _kombu_codec(content_type: str) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    if content_type == "application/zstd":
        return _kombu_zstd()
    encoder, _ = kombu.compression.get_encoder(content_type)
    return encoder, kombu.compression.get_decoder(content_type)


@pytest.mark.interop
@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{len(b)}B")
@pytest.mark.parametrize("name", NAMES)
def test_kombu_like_to_kombu(name: str, body: bytes) -> None:
    compressed, content_type = compress(body, name)
    _, kombu_decoder = _kombu_codec(content_type)
    assert kombu_decoder(compressed) == body
    if content_type in kombu.compression.encoders():
        assert kombu.compression.decompress(compressed, content_type) == body


@pytest.mark.interop
@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{len(b)}B")
@pytest.mark.parametrize("content_type", list(METHODS))
def test_kombu_to_kombu_like(content_type: str, body: bytes) -> None:
    if content_type in kombu.compression.encoders():
        compressed, header = kombu.compression.compress(body, content_type)
        assert header == content_type
    else:
        compressed = _kombu_codec(content_type)[0](body)
    for name in [content_type, *METHODS[content_type]]:
        assert decompress(compressed, name) == body


@pytest.mark.interop
@pytest.mark.parametrize("alias", [alias for aliases in METHODS.values() for alias in aliases])
def test_header_value_matches_kombu(alias: str) -> None:
    content_type = compress(b"x", alias)[1]
    if content_type in kombu.compression.encoders():
        assert kombu.compression.compress(b"x", alias)[1] == content_type


# -- errors -----------------------------------------------------------------------------
CORRUPT = b"this is not compressed data at all"


@pytest.mark.parametrize("name", NAMES)
def test_corrupt_data(name: str) -> None:
    content_type = _content_type(name)
    with pytest.raises(DecodeError) as excinfo:
        decompress(CORRUPT, name)
    message = str(excinfo.value)
    assert content_type in message
    assert name in message
    assert excinfo.value.__cause__ is not None
    assert not isinstance(excinfo.value.__cause__, DecodeError)


@pytest.mark.parametrize("content_type", list(METHODS))
def test_truncated_data(content_type: str) -> None:
    compressed, _ = compress(os.urandom(2000), content_type)
    with pytest.raises(DecodeError, match=content_type):
        decompress(compressed[: len(compressed) // 2], content_type)


def test_zstd_trailing_garbage() -> None:
    compressed, _ = compress(b"data", "zstd")
    with pytest.raises(DecodeError, match="zstd"):
        decompress(compressed + b"junk", "zstd")


@pytest.mark.parametrize("call", [compress, decompress])
def test_unknown_method(call: Callable[[bytes, str], object]) -> None:
    with pytest.raises(SerializerNotInstalled, match="snappy") as excinfo:
        call(b"data", "snappy")
    # Kombu raises KeyError here; code catching that keeps working.
    assert isinstance(excinfo.value, KeyError)
    assert str(excinfo.value) == "No compression method installed for 'snappy'"


@pytest.mark.parametrize("call", [get_encoder, get_decoder])
def test_unknown_method_lookup(call: Callable[[str], object]) -> None:
    with pytest.raises(SerializerNotInstalled, match="application/x-snappy"):
        call("application/x-snappy")


def test_encode_error() -> None:
    with pytest.raises(EncodeError, match="zlib") as excinfo:
        compress(12345, "zlib")  # type: ignore[arg-type]
    assert isinstance(excinfo.value.__cause__, TypeError)


# -- optional packages ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content_type", "modules"),
    [
        ("zstd", "application/zstd", ["zstandard", "compression.zstd", "backports.zstd"]),
        ("brotli", "application/x-brotli", ["brotli", "brotlicffi"]),
    ],
)
def test_missing_optional_package(
    monkeypatch: pytest.MonkeyPatch, name: str, content_type: str, modules: list[str]
) -> None:
    compressed, _ = compress(b"data", name)
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)
    compression._zstd_functions.cache_clear()

    hint = f'pip install "kombu_like[{name}]"'
    with pytest.raises(SerializerNotInstalled) as excinfo:
        compress(b"data", name)
    assert hint in str(excinfo.value)
    assert not isinstance(excinfo.value, EncodeError)
    with pytest.raises(SerializerNotInstalled) as excinfo:
        decompress(compressed, content_type)
    assert hint in str(excinfo.value)
    assert not isinstance(excinfo.value, DecodeError)
    assert content_type not in encoders()
    assert "application/x-gzip" in encoders()


# -- registering methods ----------------------------------------------------------------
def _reverse(data: bytes) -> bytes:
    return bytes(data)[::-1]


def test_register_custom_method() -> None:
    register(_reverse, _reverse, "application/x-reverse", aliases=["reverse", "rev"])
    assert "application/x-reverse" in encoders()
    assert compress(b"abc", "rev") == (b"cba", "application/x-reverse")
    assert decompress(b"cba", "application/x-reverse") == b"abc"
    assert get_encoder("reverse") == (_reverse, "application/x-reverse")
    assert get_decoder("rev") is _reverse


def test_register_without_aliases_and_failure_message() -> None:
    def failing(data: bytes) -> bytes:
        raise ValueError("bad input")

    register(_reverse, failing, "application/x-fails")
    with pytest.raises(DecodeError, match="application/x-fails") as excinfo:
        decompress(b"x", "application/x-fails")
    assert isinstance(excinfo.value.__cause__, ValueError)


def test_register_replaces_lazy_builtin() -> None:
    register(_reverse, _reverse, "application/zstd", aliases=["zstd"])
    assert compress(b"ab", "zstd") == (b"ba", "application/zstd")
    assert "application/zstd" in encoders()


def test_registrations_do_not_leak_between_tests() -> None:
    assert "application/x-reverse" not in encoders()
    assert "rev" not in compression._aliases
