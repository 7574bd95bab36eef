"""tests/settings_outage.py for workers on hosts of their own (tests/test_hosts.py).

RTCSTREAM_TEST_ICE_HOSTS: the worker's own address, for ICE (not loopback);
RTCSTREAM_TEST_ALLOWED_HOSTS: the hosts' addresses, which requests carry as Host.
"""

import os

from tests.settings_outage import *  # noqa: F403
from tests.settings_outage import ALLOWED_HOSTS, RTCSTREAM

ALLOWED_HOSTS = [
    *ALLOWED_HOSTS,
    *filter(None, os.environ.get("RTCSTREAM_TEST_ALLOWED_HOSTS", "").split(",")),
]
RTCSTREAM = {
    **RTCSTREAM,
    "ICE_HOST_ADDRESSES": os.environ.get("RTCSTREAM_TEST_ICE_HOSTS", "127.0.0.1").split(","),
}
