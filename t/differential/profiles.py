"""Hypothesis settings for the differential tests: a bounded CI profile and a long one.

CI runs ``ci``: few examples, derandomized and without an example database, so a run is
reproducible and the whole ``t/differential`` directory stays well under a minute.
``KOMBU_LIKE_DIFFERENTIAL=long`` (``extra/test.sh --differential-long``) runs ``long``:
random seeds, many more and longer scenarios.  The profiles are applied per test (never
loaded globally), so other hypothesis tests keep their own settings.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings

LONG = os.environ.get("KOMBU_LIKE_DIFFERENTIAL", "").lower() == "long"

_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": list(HealthCheck),
    "print_blob": True,
}


def profile(examples: int, steps: int = 0, long_examples: int = 0, long_steps: int = 0) -> settings:
    """Settings for one differential test: ``examples`` in CI, ``long_examples`` when long."""
    if LONG:
        chosen: dict[str, Any] = {
            "max_examples": long_examples or examples * 25,
            "derandomize": False,
        }
        if steps:
            chosen["stateful_step_count"] = long_steps or steps * 2
    else:
        # no shrinking in CI: a failing scenario is reported as generated, within the budget
        # (the long profile shrinks it to a minimal one)
        chosen = {"max_examples": examples, "derandomize": True, "phases": (Phase.explicit, Phase.generate)}
        if steps:
            chosen["stateful_step_count"] = steps
    return settings(**_COMMON, **chosen)
