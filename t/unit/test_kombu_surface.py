"""Kombu 5.7's whole public surface exists in kombu_like, module by module.

For every module of the installed Kombu (walked with :mod:`pkgutil`) the same path under
kombu_like must import and hold each public name: the module's ``__all__``, or -- for a
module without one -- the classes and functions it defines at module level.  A callable
must accept Kombu's parameters: the same positional names in the same order, each keyword
by name (or through ``**kwargs``), and no extra required parameter.

The only exceptions are the deliberate omissions listed, each with its reason, in
``docs/migrating-from-kombu.rst`` (section "Not provided"); this test reads them from
there, and fails on an entry that is no longer missing, so the list stays true.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import kombu
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "migrating-from-kombu.rst"

#: ``* ``kombu.x.y`` -- reason`` items of the omissions section
_ITEM = re.compile(r"^\* ``(?P<path>kombu(?:\.[A-Za-z_][\w]*)*)``\s+--\s+(?P<reason>\S.*)$")


def listed(section: str) -> dict[str, str]:
    """Module or name -> reason, as a section of the migration guide lists them."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f".. {section}-start")
    end = text.index(f".. {section}-end")
    found: dict[str, str] = {}
    for line in text[start:end].splitlines():
        match = _ITEM.match(line.strip())
        if match:
            found[match["path"]] = match["reason"]
    return found


OMITTED = listed("omissions")
#: names that exist with parameters of their own (each with its reason)
DIFFERENT_SIGNATURES = listed("signature-differences")


def _omitted(path: str) -> bool:
    parts = path.split(".")
    return any(".".join(parts[:i]) in OMITTED for i in range(1, len(parts) + 1))


def _ours(path: str) -> str:
    return "kombu_like" + path[len("kombu") :]


def kombu_modules() -> list[str]:
    names = ["kombu"]
    names += [info.name for info in pkgutil.walk_packages(kombu.__path__, "kombu.", onerror=lambda name: None)]
    return sorted(set(names))


def _defined_callables(module: ModuleType) -> list[str]:
    """Public classes and functions a module defines (or assigns) at module level."""
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.append(node.target.id)
    return [n for n in dict.fromkeys(names) if not n.startswith("_") and callable(getattr(module, n, None))]


def public_names(module: ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return _defined_callables(module)


def _signature(obj: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def signature_problem(theirs: Any, ours: Any) -> str | None:
    """Why code calling ``theirs`` with Kombu's parameters would break on ``ours`` (or None)."""
    if theirs is ours or not callable(theirs):
        return None
    if not callable(ours):
        return "not callable"
    t_sig, o_sig = _signature(theirs), _signature(ours)
    if t_sig is None or o_sig is None:
        return None
    t_params = list(t_sig.parameters.values())
    o_params = list(o_sig.parameters.values())
    o_by_name = {p.name: p for p in o_params}
    o_pos = [p.name for p in o_params if p.kind in _POSITIONAL]
    o_var_pos = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in o_params)
    o_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in o_params)
    t_generic = {p.kind for p in t_params} >= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}
    problems = []
    for i, name in enumerate(p.name for p in t_params if p.kind in _POSITIONAL):
        if i < len(o_pos):
            if o_pos[i] != name:
                problems.append(f"positional parameter {i} is {o_pos[i]!r}, Kombu's is {name!r}")
        elif not o_var_pos:
            problems.append(f"missing positional parameter {name!r}")
    for p in t_params:
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in o_by_name and not o_var_kw:
            problems.append(f"missing keyword parameter {p.name!r}")
    t_names = {p.name for p in t_params}
    for p in o_params:
        required = p.default is inspect.Parameter.empty and p.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        )
        if required and p.name not in t_names and not t_generic:
            problems.append(f"extra required parameter {p.name!r}")
    if problems:
        return f"{t_sig} vs ours {o_sig}: " + "; ".join(problems)
    return None


def survey() -> tuple[int, int, list[str]]:
    """(names checked, names present, problems) over every Kombu module not omitted."""
    checked = present = 0
    problems: list[str] = []
    for path in kombu_modules():
        if _omitted(path):
            continue
        try:
            theirs = importlib.import_module(path)
        except Exception:
            # a Kombu transport whose driver is not installed: its module must still exist
            theirs = None
        try:
            ours = importlib.import_module(_ours(path))
        except ImportError as exc:
            problems.append(f"{path}: module missing ({exc})")
            continue
        if theirs is None:
            continue
        for name in public_names(theirs):
            full = f"{path}.{name}"
            if full in OMITTED:
                continue
            checked += 1
            if not hasattr(ours, name):
                problems.append(f"{full}: missing")
                continue
            present += 1
            problem = signature_problem(getattr(theirs, name), getattr(ours, name))
            if problem and full not in DIFFERENT_SIGNATURES:
                problems.append(f"{full}: {problem}")
    return checked, present, problems


def test_every_kombu_name_exists_with_kombus_parameters() -> None:
    checked, present, problems = survey()
    assert checked > 250
    assert problems == [], f"{len(problems)} problems ({present}/{checked} names present):\n" + "\n".join(problems)


def test_omissions_have_reasons() -> None:
    assert OMITTED, "the omissions section of docs/migrating-from-kombu.rst was not found"
    for path, reason in {**OMITTED, **DIFFERENT_SIGNATURES}.items():
        assert len(reason.split()) >= 3, f"{path}: say why it is omitted"


@pytest.mark.parametrize("path", sorted(OMITTED))
def test_omitted_names_are_really_absent(path: str) -> None:
    """An entry for something kombu_like now provides is stale: remove it from the list."""
    module_path, _, name = path.rpartition(".")
    try:
        importlib.import_module(_ours(path))
    except ImportError:
        pass
    else:
        pytest.fail(f"{path} is listed as omitted but {_ours(path)} imports")
    try:
        module = importlib.import_module(_ours(module_path))
    except ImportError:
        return
    assert not hasattr(module, name), f"{path} is listed as omitted but {_ours(path)} exists"


@pytest.mark.parametrize("path", sorted(DIFFERENT_SIGNATURES))
def test_listed_signature_differences_still_differ(path: str) -> None:
    module_path, _, name = path.rpartition(".")
    theirs = getattr(importlib.import_module(module_path), name)
    ours = getattr(importlib.import_module(_ours(module_path)), name)
    assert signature_problem(theirs, ours), f"{path} now takes Kombu's parameters: remove it from the list"


def test_the_check_catches_a_missing_name_and_a_renamed_parameter() -> None:
    def kombu_style(connection: Any, channel: Any = None, *, limit: int = 1) -> None: ...

    def renamed(conn: Any, channel: Any = None, *, limit: int = 1) -> None: ...

    def no_limit(connection: Any, channel: Any = None) -> None: ...

    def with_kwargs(connection: Any, *args: Any, **kwargs: Any) -> None: ...

    def extra_required(connection: Any, channel: Any, limit: int, extra: int) -> None: ...

    assert signature_problem(kombu_style, kombu_style) is None
    assert "positional parameter 0" in (signature_problem(kombu_style, renamed) or "")
    assert "missing keyword parameter 'limit'" in (signature_problem(kombu_style, no_limit) or "")
    assert signature_problem(kombu_style, with_kwargs) is None
    assert "extra required parameter 'extra'" in (signature_problem(kombu_style, extra_required) or "")
