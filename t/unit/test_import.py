"""What ``import kombu_like`` does to a program: nothing it did not ask for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_library_logs_nothing_when_the_program_did_not_configure_logging() -> None:
    # without a handler of its own, Python's last-resort handler would print warnings
    result = run_python(
        "import logging, kombu_like.rpc\n"
        "logging.getLogger('kombu_like.rpc').error('handler raised')\n"
        "logging.getLogger('kombu_like').warning('warned')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_configured_logging_still_sees_library_records() -> None:
    result = run_python(
        "import logging, kombu_like.rpc\n"
        "logging.basicConfig(format='%(name)s %(message)s')\n"
        "logging.getLogger('kombu_like.rpc').error('handler raised')\n"
    )
    assert result.stderr == "kombu_like.rpc handler raised\n"


#: modules ``import kombu_like`` must not load: drivers, optional codecs, the CLI, the
#: transports -- each is loaded when a program first uses it
HEAVY = [
    "amqp",
    "redis",
    "boto3",
    "botocore",
    "click",
    "yaml",
    "msgpack",
    "zstandard",
    "brotli",
    "ssl",
    "socket",
    "logging",
    "importlib.metadata",
    "kombu_like.connection",
    "kombu_like.messaging",
    "kombu_like.serialization",
    "kombu_like.compression",
    "kombu_like.transport",
    "kombu_like.transport.amqp",
    "kombu_like.transport.redis",
    "kombu_like.transport.sqs",
    "kombu_like.transport.sqlite",
    "kombu_like.transport.memory",
    "kombu_like.cli",
]


def test_import_kombu_like_loads_nothing_heavy() -> None:
    result = run_python(
        "import sys\n"
        "before = set(sys.modules)\n"
        "import kombu_like\n"
        f"heavy = {HEAVY!r}\n"
        "print(sorted(m for m in heavy if m in sys.modules and m not in before))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"import kombu_like loaded: {result.stdout}"


def test_public_names_load_on_first_use() -> None:
    result = run_python(
        "import sys\n"
        "import kombu_like\n"
        "from kombu_like import Connection, Producer\n"
        "print(Connection.__module__, Producer.__module__, 'kombu_like.connection' in sys.modules)\n"
        "print('kombu_like.transport.redis' in sys.modules, 'click' in sys.modules, 'redis' in sys.modules)\n"
        "import kombu_like.transport.memory\n"
        "print(sorted(n for n in kombu_like.__all__ if n not in dir(kombu_like)))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "kombu_like.connection kombu_like.messaging True",
        "False False False",  # a Connection does not load every transport's driver
        "[]",
    ]


def test_every_logging_module_leaves_the_package_logger_silent() -> None:
    # each module that logs is imported alone, in a fresh interpreter
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "kombu_like").rglob("*.py")
        if "getLogger(__name__)" in path.read_text(encoding="utf-8") and path.name != "cli.py"
    )
    assert "kombu_like.rpc" in modules
    code = (
        "import importlib, logging, sys\n"
        "importlib.import_module(sys.argv[1])\n"
        "print(any(isinstance(h, logging.NullHandler) for h in logging.getLogger('kombu_like').handlers))\n"
    )
    # all started at once: each interpreter spends its time starting up and importing
    procs = {
        module: subprocess.Popen(
            [sys.executable, "-c", code, module], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for module in modules
    }
    missing = []
    for module, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=60)
        if stdout.strip() != "True":
            missing.append((module, stdout.strip() or stderr[-300:]))
    assert missing == []


def test_submodules_are_attributes_after_a_bare_import() -> None:
    result = run_python("import kombu_like\nprint(kombu_like.exceptions.NotFound.__name__)\n")
    assert result.stdout.strip() == "NotFound", result.stderr


def test_using_memory_loads_no_optional_driver_or_codec() -> None:
    result = run_python(
        "import sys\n"
        "from kombu_like import Connection\n"
        "with Connection('memory://') as conn:\n"
        "    q = conn.SimpleQueue('import-check')\n"
        "    q.put({'a': 1}, compression='zlib')\n"
        "    assert q.get(timeout=5).payload == {'a': 1}\n"
        "    q.close()\n"
        "optional = ['redis', 'boto3', 'botocore', 'click', 'yaml', 'msgpack', 'zstandard', 'brotli',\n"
        "            'kombu_like.transport.redis', 'kombu_like.transport.sqs', 'kombu_like.cli']\n"
        "print(sorted(m for m in optional if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
