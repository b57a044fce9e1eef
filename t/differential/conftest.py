"""Differential tests: the same scenario on Kombu 5.7 and on kombu_like, outcomes compared.

Kombu is a test dependency; brokers come from the shared fixtures in ``t/conftest.py``.
"""

from __future__ import annotations

import pytest

kombu = pytest.importorskip("kombu", reason="Kombu 5.7 is a test dependency: pip install -e '.[test]'")
