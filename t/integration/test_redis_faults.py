"""Redis transport under faults: credentials in driver errors, hung servers, restarts."""

from __future__ import annotations

import logging
import traceback

import pytest

from kombu_like import Connection

pytestmark = pytest.mark.redis


@pytest.mark.parametrize("password", ["S3cretPW", "p%40ss:w/rd", "x"])
def test_credentials_echoed_by_the_driver_never_reach_errors_or_logs(
    password: str, caplog: pytest.LogCaptureFixture
) -> None:
    # a mis-written URL: redis-py reads "sentinel://:PASSWORD@127.0.0.1" as the host name
    # and echoes it back in its error message
    conn = Connection(f"redis+sentinel://:{password}@127.0.0.1:1", connect_timeout=1)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(Exception) as info:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0)
    shown = "".join(traceback.format_exception(info.value)) + caplog.text + repr(conn)
    assert "connecting" in caplog.text
    secret = password if len(password) > 1 else ":x@"
    assert secret not in shown
