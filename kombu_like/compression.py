"""Compression methods for message bodies.

A compressed message carries the method's content type in its ``compression`` header.
Content types and aliases are Kombu 5's, so compressed messages interoperate:

==========================  =========================  ============================
content type                aliases                    implementation
==========================  =========================  ============================
``application/x-gzip``      ``gzip``, ``zlib``         :mod:`zlib` (zlib format)
``application/x-bz2``       ``bzip2``, ``bzip``        :mod:`bz2`
``application/x-lzma``      ``lzma``, ``xz``           :mod:`lzma` (xz format)
``application/zstd``        ``zstd``, ``zstandard``    ``zstandard`` (extra ``zstd``)
``application/x-brotli``    ``brotli``                 ``brotli`` (extra ``brotli``)
==========================  =========================  ============================

``zstandard`` and ``brotli`` are imported on first use; when they are missing, using
them raises :class:`~kombu_like.exceptions.SerializerNotInstalled` naming the extra to
install.  (Python 3.14's :mod:`compression.zstd`, ``backports.zstd`` and ``brotlicffi``
are used when the preferred package is absent.)

:func:`decompress` takes a ``max_size``: the built-in methods then decompress
incrementally and stop with :class:`~kombu_like.exceptions.DecodeError` as soon as the
output would pass it, so a small "decompression bomb" never occupies more than about
``max_size`` bytes.  Consumers pass :data:`DEFAULT_MAX_DECOMPRESSED_SIZE` (64 MiB) unless
configured otherwise.  A decoder added with :func:`register` is called in one piece and its
result checked afterwards.
"""

from __future__ import annotations

import bz2
import functools
import importlib
import importlib.util
import lzma
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from .exceptions import DecodeError, EncodeError, SerializerNotInstalled, _wrap_errors

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED_SIZE",
    "compress",
    "decompress",
    "encoders",
    "get_decoder",
    "get_encoder",
    "register",
]

#: What a message body may decompress to, in bytes, unless a consumer says otherwise (64 MiB).
DEFAULT_MAX_DECOMPRESSED_SIZE = 64 * 1024 * 1024

BytesLike = bytes | bytearray | memoryview
EncoderT = Callable[[Any], bytes]
DecoderT = Callable[[Any], bytes]
#: ``(data, max_size) -> bytes``: decompresses incrementally, raising :class:`_TooLarge`
#: before producing more than ``max_size`` bytes
LimitedDecoderT = Callable[[Any, int], bytes]

_aliases: dict[str, str] = {}
_encoders: dict[str, EncoderT] = {}
_decoders: dict[str, DecoderT] = {}
# Short name used in error messages, by content type.
_names: dict[str, str] = {}
# Built-in methods backed by optional packages: content type -> "is it importable?".
_probes: dict[str, Callable[[], bool]] = {}
# Incremental decoders of the built-in methods, by content type.
_limited: dict[str, LimitedDecoderT] = {}


class _TooLarge(Exception):
    """The decompressed data passed the limit (turned into a DecodeError naming it)."""


class _UnknownCompression(SerializerNotInstalled, KeyError):
    """No compression method by this name; also a KeyError, which is what Kombu raises."""

    def __str__(self) -> str:
        # KeyError would quote the message like a dictionary key.
        return str(self.args[0]) if self.args else ""


def register(
    encoder: EncoderT,
    decoder: DecoderT,
    content_type: str,
    aliases: Iterable[str] | None = None,
) -> None:
    """Register a compression method.

    Arguments:
        encoder: compresses ``bytes`` into ``bytes``.
        decoder: decompresses what ``encoder`` produced.
        content_type: the MIME type written into the ``compression`` header.
        aliases: other names the method can be asked for by (``"zlib"``, ``"xz"``...).
    """
    aliases = list(aliases or ())
    _encoders[content_type] = encoder
    _decoders[content_type] = decoder
    _names[content_type] = aliases[0] if aliases else content_type
    _probes.pop(content_type, None)
    # a decoder registered over a built-in method replaces its incremental decoder too
    _limited.pop(content_type, None)
    _aliases.update((alias, content_type) for alias in aliases)


def encoders() -> list[str]:
    """Return the content types of the compression methods that can be used here."""
    return [ctype for ctype in _encoders if ctype not in _probes or _probes[ctype]()]


def _resolve(name: str) -> str:
    content_type = _aliases.get(name, name)
    if content_type not in _encoders:
        raise _UnknownCompression(f"No compression method installed for {name!r}")
    return content_type


def get_encoder(t: str) -> tuple[EncoderT, str]:
    """Return ``(encoder, content_type)`` for a content type or alias.

    Raises:
        SerializerNotInstalled: (also a ``KeyError``, as in Kombu) the name is unknown.
    """
    content_type = _resolve(t)
    return _encoders[content_type], content_type


def get_decoder(t: str) -> DecoderT:
    """Return the decoder for a content type or alias.

    Raises:
        SerializerNotInstalled: (also a ``KeyError``, as in Kombu) the name is unknown.
    """
    content_type = _aliases.get(t, t)
    try:
        return _decoders[content_type]
    except KeyError:
        raise _UnknownCompression(f"No compression method installed for {t!r}") from None


def _describe(name: str, content_type: str) -> str:
    short = name if name in _aliases else _names.get(content_type)
    return f"{short} ({content_type})" if short and short != content_type else content_type


def compress(body: BytesLike | str, content_type: str) -> tuple[bytes, str]:
    """Compress ``body`` (text is encoded as UTF-8 first).

    Arguments:
        body: the payload.
        content_type: the method's content type or an alias (``"zlib"``, ``"bzip2"``...).

    Returns:
        ``(compressed, content_type)``, the content type being the method's full one, as
        written into the ``compression`` header.

    Raises:
        SerializerNotInstalled: the method is unknown or its package is missing.
        EncodeError: the method failed on ``body``.
    """
    encoder, resolved = get_encoder(content_type)
    data = body.encode("utf-8") if isinstance(body, str) else body
    with _wrap_errors(EncodeError, f"Cannot compress with {_describe(content_type, resolved)}"):
        return encoder(data), resolved


def decompress(body: BytesLike, content_type: str, max_size: int | None = None) -> bytes:
    """Decompress ``body`` compressed with the method ``content_type`` (or an alias).

    Arguments:
        body: the compressed data.
        content_type: the method's content type or an alias.
        max_size: the most bytes the result may have; ``None`` (the default, as in Kombu)
            means no limit.  The built-in methods stop decompressing as soon as the output
            passes it, so the memory used stays close to ``max_size``.

    Raises:
        SerializerNotInstalled: the method is unknown or its package is missing.
        DecodeError: ``body`` is not valid data for that method, or decompresses to more
            than ``max_size`` bytes.
    """
    decoder = get_decoder(content_type)
    resolved = _aliases.get(content_type, content_type)
    description = _describe(content_type, resolved)
    if max_size is None:
        with _wrap_errors(DecodeError, f"Cannot decompress {description} data"):
            return decoder(body)
    if max_size < 0:
        raise ValueError(f"max_size must not be negative, got {max_size!r}")
    limited = _limited.get(resolved)
    try:
        with _wrap_errors(DecodeError, f"Cannot decompress {description} data"):
            if limited is not None:
                return limited(body, max_size)
            data = decoder(body)
            if len(data) > max_size:
                raise _TooLarge()
            return data
    except DecodeError as exc:
        if not isinstance(exc.__cause__, _TooLarge):
            raise
    raise DecodeError(
        f"Cannot decompress {description} data: it decompresses to more than the limit of "
        f"{max_size} bytes (max_decompressed_size)"
    )


# -- incremental decompression ----------------------------------------------------
def _truncated(method: str) -> ValueError:
    return ValueError(f"compressed {method} data ended before the end of the stream")


#: the most output asked of a decompressor per call: a decompressor's buffer grows by
#: doubling, so one call for the whole limit could hold up to twice the limit at once
_OUTPUT_STEP = 1 << 20


def _zlib_limited(data: Any, limit: int) -> bytes:
    # zlib.decompress reads one stream and ignores what follows it; so does this
    dobj = zlib.decompressobj()
    chunks: list[bytes] = []
    total = 0
    pending = data
    while True:
        chunk = dobj.decompress(pending, min(limit - total + 1, _OUTPUT_STEP))
        total += len(chunk)
        if total > limit:
            raise _TooLarge()
        chunks.append(chunk)
        pending = dobj.unconsumed_tail
        if dobj.eof:
            return b"".join(chunks)
        if not pending and not chunk:
            raise _truncated("zlib")


def _stream_decoder(factory: Callable[[], Any], method: str, ignore_trailing: bool) -> LimitedDecoderT:
    """An incremental decoder over decompressor objects with the :mod:`bz2` / :mod:`lzma`
    interface (``decompress(data, max_length)``, ``eof``, ``needs_input``,
    ``unused_data``); concatenated streams are all read, as the one-shot functions do.

    ``ignore_trailing``: bytes after the last stream that do not start a valid one are
    ignored (what :func:`bz2.decompress` and :func:`lzma.decompress` do).
    """

    def decode(data: Any, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        first_stream = True
        while True:
            dobj = factory()
            try:
                chunk = dobj.decompress(data, max_length=min(limit - total + 1, _OUTPUT_STEP))
            except Exception:
                if ignore_trailing and not first_stream:
                    break
                raise
            first_stream = False
            while True:
                total += len(chunk)
                if total > limit:
                    raise _TooLarge()
                chunks.append(chunk)
                if dobj.eof:
                    break
                if dobj.needs_input:
                    raise _truncated(method)
                # the output was bounded: the rest of the input is buffered inside dobj
                chunk = dobj.decompress(b"", max_length=min(limit - total + 1, _OUTPUT_STEP))
            data = dobj.unused_data
            if not data:
                break
        return b"".join(chunks)

    return decode


#: compressed bytes fed to a decompressor that cannot bound its output per call: zstd
#: and brotli reach ~32000:1 (zstd RLE blocks), so 128 bytes yield at most ~4 MiB
_SLICE = 128


def _zstandard_limited(module: Any) -> LimitedDecoderT:
    def decode(data: Any, limit: int) -> bytes:
        dctx = module.ZstdDecompressor()
        view = memoryview(data).cast("B")
        chunks: list[bytes] = []
        total = 0
        while True:
            dobj = dctx.decompressobj()
            pos = 0
            while not dobj.eof and pos < len(view):
                chunk = dobj.decompress(view[pos : pos + _SLICE])
                pos += _SLICE
                total += len(chunk)
                if total > limit:
                    raise _TooLarge()
                chunks.append(chunk)
            if not dobj.eof:
                raise _truncated("zstd")
            rest = bytes(dobj.unused_data) + bytes(view[pos:])
            if not rest:
                return b"".join(chunks)
            view = memoryview(rest)

    return decode


def _brotli_limited(data: Any, limit: int) -> bytes:
    module = _import_first(_BROTLI_MODULES, "brotli", "brotli")
    dobj = module.Decompressor()
    chunks: list[bytes] = []
    total = 0
    if hasattr(dobj, "can_accept_more_data"):
        # brotli >= 1.1 bounds each call's output itself
        chunk = dobj.process(data, output_buffer_limit=min(limit + 1, _OUTPUT_STEP))
        while True:
            total += len(chunk)
            if total > limit:
                raise _TooLarge()
            chunks.append(chunk)
            if dobj.is_finished():
                return b"".join(chunks)
            if not chunk and dobj.can_accept_more_data():
                raise _truncated("brotli")  # all input used, nothing more to give
            chunk = dobj.process(b"", output_buffer_limit=min(limit - total + 1, _OUTPUT_STEP))
    view = memoryview(data).cast("B")
    for pos in range(0, len(view), _SLICE):
        chunk = dobj.process(view[pos : pos + _SLICE])
        total += len(chunk)
        if total > limit:
            raise _TooLarge()
        chunks.append(chunk)
    if not dobj.is_finished():
        raise _truncated("brotli")
    return b"".join(chunks)


def _zstd_limited(data: Any, limit: int) -> bytes:
    return _zstd_limited_decoder()(data, limit)


@functools.cache
def _zstd_limited_decoder() -> LimitedDecoderT:
    # the standard library's interface bounds each call's output; prefer it when present
    for name in ("compression.zstd", "backports.zstd"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return _stream_decoder(module.ZstdDecompressor, "zstd", ignore_trailing=False)
    return _zstandard_limited(_import_first(_ZSTD_MODULES, "zstd", "zstd"))


# -- optional packages ----------------------------------------------------------------
def _importable(*modules: str) -> Callable[[], bool]:
    def probe() -> bool:
        for module in modules:
            try:
                if importlib.util.find_spec(module) is not None:
                    return True
            except (ImportError, ValueError):
                # find_spec imports the parent package, which may itself be missing.
                continue
        return False

    return probe


def _import_first(modules: tuple[str, ...], method: str, extra: str) -> Any:
    for module in modules:
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    raise SerializerNotInstalled(
        f"Compression method {method} is not available: the {modules[0]!r} package is missing. "
        f'Install it with: pip install "kombu_like[{extra}]"'
    )


_ZSTD_MODULES = ("zstandard", "compression.zstd", "backports.zstd")
_BROTLI_MODULES = ("brotli", "brotlicffi")


@functools.cache
def _zstd_functions() -> tuple[EncoderT, DecoderT]:
    module = _import_first(_ZSTD_MODULES, "zstd", "zstd")
    if module.__name__ != "zstandard":
        # The standard library's API (also backports.zstd's) already has Kombu's semantics.
        return module.compress, module.decompress

    def zstd_compress(data: Any) -> bytes:
        # One-shot compression records the content size, which every decoder can use.
        return module.ZstdCompressor().compress(data)  # type: ignore[no-any-return]

    def zstd_decompress(data: Any) -> bytes:
        # Mirrors compression.zstd.decompress: concatenated frames are all read, and a
        # truncated frame is an error rather than a silently short result.
        dctx = module.ZstdDecompressor()
        chunks = []
        while True:
            dobj = dctx.decompressobj()
            chunks.append(dobj.decompress(data))
            if not dobj.eof:
                raise module.ZstdError("compressed data ended before the end of the frame")
            data = dobj.unused_data
            if not data:
                return b"".join(chunks)

    return zstd_compress, zstd_decompress


def _zstd_compress(data: Any) -> bytes:
    return _zstd_functions()[0](data)


def _zstd_decompress(data: Any) -> bytes:
    return _zstd_functions()[1](data)


def _brotli_compress(data: Any) -> bytes:
    return _import_first(_BROTLI_MODULES, "brotli", "brotli").compress(data)  # type: ignore[no-any-return]


def _brotli_decompress(data: Any) -> bytes:
    return _import_first(_BROTLI_MODULES, "brotli", "brotli").decompress(data)  # type: ignore[no-any-return]


def _register_builtins() -> None:
    register(zlib.compress, zlib.decompress, "application/x-gzip", aliases=["gzip", "zlib"])
    register(bz2.compress, bz2.decompress, "application/x-bz2", aliases=["bzip2", "bzip"])
    register(_brotli_compress, _brotli_decompress, "application/x-brotli", aliases=["brotli"])
    _probes["application/x-brotli"] = _importable(*_BROTLI_MODULES)
    register(lzma.compress, lzma.decompress, "application/x-lzma", aliases=["lzma", "xz"])
    register(_zstd_compress, _zstd_decompress, "application/zstd", aliases=["zstd", "zstandard"])
    _probes["application/zstd"] = _importable(*_ZSTD_MODULES)
    _limited.update(
        {
            "application/x-gzip": _zlib_limited,
            "application/x-bz2": _stream_decoder(bz2.BZ2Decompressor, "bzip2", ignore_trailing=True),
            "application/x-lzma": _stream_decoder(lzma.LZMADecompressor, "lzma", ignore_trailing=True),
            "application/zstd": _zstd_limited,
            "application/x-brotli": _brotli_limited,
        }
    )


_register_builtins()
