"""tests/settings_multi.py plus the stream of tests/test_broker_outage.py.

That test gives the workers a Redis of its own (REDIS_URL), which it kills and restarts.
"""

from tests.settings_multi import *  # noqa: F403
from tests.settings_multi import RTCSTREAM

RTCSTREAM = {
    **RTCSTREAM,
    "STREAMS": {**RTCSTREAM["STREAMS"], "echo-report": "tests.streams_outage.echo_report"},
}
