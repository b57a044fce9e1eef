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
"""

from __future__ import annotations

import bz2
import functools
import importlib
import importlib.util
import lzma
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from .exceptions import DecodeError, EncodeError, SerializerNotInstalled

__all__ = ["compress", "decompress", "encoders", "get_decoder", "get_encoder", "register"]

BytesLike = bytes | bytearray | memoryview
EncoderT = Callable[[Any], bytes]
DecoderT = Callable[[Any], bytes]

_aliases: dict[str, str] = {}
_encoders: dict[str, EncoderT] = {}
_decoders: dict[str, DecoderT] = {}
# Short name used in error messages, by content type.
_names: dict[str, str] = {}
# Built-in methods backed by optional packages: content type -> "is it importable?".
_probes: dict[str, Callable[[], bool]] = {}


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


@contextmanager
def _wrap_errors(wrapper: type[Exception], message: str) -> Iterator[None]:
    try:
        yield
    except SerializerNotInstalled:
        # A missing optional package must reach the caller as itself, not as bad data.
        raise
    except Exception as exc:
        raise wrapper(f"{message}: {exc!r}") from exc


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


def decompress(body: BytesLike, content_type: str) -> bytes:
    """Decompress ``body`` compressed with the method ``content_type`` (or an alias).

    Raises:
        SerializerNotInstalled: the method is unknown or its package is missing.
        DecodeError: ``body`` is not valid data for that method.
    """
    decoder = get_decoder(content_type)
    resolved = _aliases.get(content_type, content_type)
    with _wrap_errors(DecodeError, f"Cannot decompress {_describe(content_type, resolved)} data"):
        return decoder(body)


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


_register_builtins()
