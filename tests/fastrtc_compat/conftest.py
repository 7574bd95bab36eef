"""Serve every program of ``programs/`` under its module name, for these tests only.

``RTCSTREAM["STREAMS"]`` is overridden (the registry resets on
``setting_changed``), so the rest of the suite never sees these streams.
"""

from __future__ import annotations

import pkgutil

import pytest
from django.conf import settings
from django.test import override_settings

from tests.fastrtc_compat import programs

PROGRAMS = sorted(m.name for m in pkgutil.iter_modules(programs.__path__))


@pytest.fixture(autouse=True)
def compat_streams():
    streams = {name: f"tests.fastrtc_compat.programs.{name}.stream" for name in PROGRAMS}
    with override_settings(RTCSTREAM={**settings.RTCSTREAM, "STREAMS": streams}):
        yield streams
