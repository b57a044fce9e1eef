"""Let code that imports ``kombu`` run on kombu_like: an explicit, opt-in import alias.

Installing kombu_like never changes what ``import kombu`` means.  A program (or a test
suite) that wants frameworks written for Kombu -- Celery, Nameko, oslo.messaging -- to run
on kombu_like switches the alias on *before anything imports kombu*::

    import kombu_like.alias
    kombu_like.alias.install()

    import kombu                       # is kombu_like
    from kombu.utils.objects import cached_property   # is kombu_like.utils.objects's

Once installed, ``kombu`` and every ``kombu.X`` resolve to the very same module objects as
``kombu_like`` and ``kombu_like.X`` (``kombu.Connection is kombu_like.Connection``); a
``kombu.X`` that kombu_like does not provide raises :class:`ModuleNotFoundError` naming it
(and ``importlib.util.find_spec`` answers ``None`` for it).

Other ways to switch it on:

* run a program under the alias: ``python -m kombu_like.alias -m celery -A proj worker``
  or ``python -m kombu_like.alias script.py args...``;
* in a pytest run: ``pytest -p kombu_like.alias`` (installed before conftest files load).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import runpy
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

__all__ = ["ALIAS", "TARGET", "AliasError", "install", "installed", "is_installed", "main", "uninstall"]

#: the package name being aliased
ALIAS = "kombu"
#: the package it resolves to
TARGET = "kombu_like"

_lock = threading.Lock()


class AliasError(RuntimeError):
    """The alias cannot be installed (Kombu itself was imported already)."""


def _target_name(fullname: str) -> str | None:
    if fullname == ALIAS:
        return TARGET
    if fullname.startswith(ALIAS + "."):
        return TARGET + fullname[len(ALIAS) :]
    return None


def _is_ours(module: Any) -> bool:
    name = getattr(module, "__name__", "") or ""
    return name == TARGET or name.startswith(TARGET + ".")


class _AliasLoader(importlib.abc.Loader):
    """Hands out the already-imported kombu_like module instead of creating a new one."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._original_spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._original_spec = getattr(module, "__spec__", None)
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamps the alias spec on the module it was handed; the module
        # keeps its own, so relative imports and reloads still work on the real name.
        if self._original_spec is not None:
            module.__spec__ = self._original_spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Resolves ``kombu`` / ``kombu.X`` to ``kombu_like`` / ``kombu_like.X``."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        name = _target_name(fullname)
        if name is None:
            return None
        try:
            found = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            found = None
        if found is None:
            # not provided: the import system reports ``No module named 'kombu.X'``, and
            # ``importlib.util.find_spec("kombu.X")`` answers None, as for any missing module
            return None
        return importlib.util.spec_from_loader(
            fullname, _AliasLoader(name), is_package=found.submodule_search_locations is not None
        )

    def __repr__(self) -> str:
        return f"<kombu_like import alias: {ALIAS} -> {TARGET}>"


def _finder() -> _AliasFinder | None:
    for entry in sys.meta_path:
        if isinstance(entry, _AliasFinder):
            return entry
    return None


def is_installed() -> bool:
    """True while ``import kombu`` resolves to kombu_like."""
    return _finder() is not None


def install() -> None:
    """Make ``kombu`` and every ``kombu.X`` import as kombu_like (idempotent).

    Raises :class:`AliasError` when the real Kombu was imported already: objects made from
    its classes would then live beside kombu_like's and the program would mix both.
    """
    with _lock:
        if _finder() is not None:
            return
        foreign = sorted(
            name
            for name, module in sys.modules.items()
            if _target_name(name) is not None and module is not None and not _is_ours(module)
        )
        if foreign:
            raise AliasError(
                f"cannot alias {ALIAS!r} to {TARGET!r}: {', '.join(foreign[:5])}"
                f"{' ...' if len(foreign) > 5 else ''} was imported already; install the "
                f"alias before anything imports {ALIAS!r}"
            )
        sys.meta_path.insert(0, _AliasFinder())
        importlib.import_module(ALIAS)


def uninstall() -> None:
    """Remove the alias; modules imported as ``kombu.X`` are forgotten under that name."""
    with _lock:
        finder = _finder()
        if finder is None:
            return
        sys.meta_path.remove(finder)
        for name in [n for n, m in sys.modules.items() if _target_name(n) is not None and _is_ours(m)]:
            del sys.modules[name]


@contextmanager
def installed() -> Iterator[None]:
    """``with installed(): ...`` -- the alias for the duration of a block."""
    already = is_installed()
    install()
    try:
        yield
    finally:
        if not already:
            uninstall()


# -- pytest: ``pytest -p kombu_like.alias`` ---------------------------------------------
def pytest_load_initial_conftests(early_config: Any, parser: Any, args: Any) -> None:
    """Install the alias before any conftest (or test module) imports Kombu."""
    install()


# -- ``python -m kombu_like.alias [-m module | script] args...`` -------------------------
_USAGE = "usage: python -m kombu_like.alias (-m module | script.py) [args...]"


def main(argv: Sequence[str] | None = None) -> int:
    """Run a module or script with the alias installed, as ``python`` itself would."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_USAGE, file=sys.stderr if not args else sys.stdout)
        return 0 if args else 2
    install()
    if args[0] == "-m":
        if len(args) < 2:
            print(_USAGE, file=sys.stderr)
            return 2
        module = args[1]
        sys.argv = [module, *args[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(args)
        runpy.run_path(args[0], run_name="__main__")
    return 0


if __name__ == "__main__":
    # run the importable module's main, so the finder installed is the one that
    # ``kombu_like.alias.is_installed()`` recognises
    from kombu_like.alias import main as _main

    sys.exit(_main())
