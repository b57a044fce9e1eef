"""The opt-in ``kombu`` -> kombu_like import alias.

Each check runs in a fresh interpreter: the alias changes what ``import kombu`` means for
a whole process, and this test process may hold the real Kombu (interop tests use it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_python(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run(
        [sys.executable, *args], cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_code(code: str) -> subprocess.CompletedProcess[str]:
    return run_python("-c", textwrap.dedent(code))


def test_installing_kombu_like_does_not_alias_kombu_by_itself() -> None:
    proc = run_code("""
        import kombu_like, kombu_like.alias
        import kombu
        assert kombu is not kombu_like, kombu
        assert not kombu_like.alias.is_installed()
        print(kombu.__name__, kombu.__file__)
    """)
    assert proc.returncode == 0, proc.stderr
    assert "site-packages/kombu/" in proc.stdout


def test_alias_maps_kombu_and_submodules_to_the_same_module_objects() -> None:
    proc = run_code("""
        import kombu_like.alias
        kombu_like.alias.install()
        import kombu, kombu.utils.objects, kombu.transport.memory
        from kombu.asynchronous.timer import Timer
        import kombu_like, kombu_like.utils.objects, kombu_like.asynchronous.timer
        assert kombu is kombu_like
        assert kombu.Connection is kombu_like.Connection
        assert kombu.utils.objects is kombu_like.utils.objects
        assert Timer is kombu_like.asynchronous.timer.Timer
        # the modules keep their own identity: names, specs, relative imports
        assert kombu.transport.memory.__name__ == "kombu_like.transport.memory"
        assert kombu.transport.memory.__spec__.name == "kombu_like.transport.memory"
        assert kombu.__version__ == "5.7.0"
        with kombu.Connection("memory://") as conn:
            q = conn.SimpleQueue("alias-check")
            q.put({"hello": "world"})
            assert q.get(timeout=5).payload == {"hello": "world"}
        print("ok")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_missing_kombu_module_names_what_is_missing() -> None:
    proc = run_code("""
        import kombu_like.alias
        kombu_like.alias.install()
        import importlib.util
        print(importlib.util.find_spec("kombu.transport.azurestoragequeues"))
        try:
            import kombu.transport.azurestoragequeues
        except ModuleNotFoundError as exc:
            print(exc.name)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["None", "kombu.transport.azurestoragequeues"]


def test_alias_refuses_when_the_real_kombu_was_imported_first() -> None:
    proc = run_code("""
        import kombu
        import kombu_like.alias
        try:
            kombu_like.alias.install()
        except kombu_like.alias.AliasError as exc:
            print("refused:", exc)
        else:
            print("installed")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("refused:")
    assert "before anything imports 'kombu'" in proc.stdout


def test_uninstall_and_context_manager() -> None:
    proc = run_code("""
        import sys
        import kombu_like.alias as alias
        with alias.installed():
            import kombu
            assert kombu.__name__ == "kombu_like"
            assert alias.is_installed()
        assert not alias.is_installed()
        assert "kombu" not in sys.modules
        import kombu
        print(kombu.__name__)
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "kombu"


def test_runner_runs_a_module_with_the_alias(tmp_path: Path) -> None:
    (tmp_path / "which_kombu.py").write_text(
        "import sys, kombu, kombu_like.alias\nprint(kombu.__name__, kombu_like.alias.is_installed(), sys.argv[1:])\n"
    )
    env_path = f"{tmp_path}{os.pathsep}"
    proc = run_python(
        "-c",
        f"import sys; sys.path.insert(0, {env_path[:-1]!r}); "
        "from kombu_like.alias import main; sys.exit(main(['-m', 'which_kombu', 'a', 'b']))",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "kombu_like True ['a', 'b']"


def test_runner_runs_a_script_with_the_alias(tmp_path: Path) -> None:
    script = tmp_path / "script.py"
    script.write_text("import sys, kombu\nprint(kombu.__name__, sys.argv)\n")
    proc = run_python("-m", "kombu_like.alias", str(script), "--flag")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"kombu_like [{str(script)!r}, '--flag']"


def test_runner_without_arguments_prints_usage() -> None:
    proc = run_python("-m", "kombu_like.alias")
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_pytest_plugin_installs_the_alias_before_tests_import_kombu(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(
        "import kombu\n\ndef test_kombu_is_kombu_like():\n    assert kombu.__name__ == 'kombu_like'\n"
    )
    proc = run_python(
        "-m",
        "pytest",
        "-q",
        "-p",
        "kombu_like.alias",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        str(tmp_path / "test_inner.py"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
