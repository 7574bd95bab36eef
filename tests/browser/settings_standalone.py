"""Settings for the standalone ``stream.ui.launch()`` test: the test project with
its own SQLite file, since the launched UI runs in a process of its own."""

import os

from tests.settings import *  # noqa: F401,F403
from tests.settings import DATABASES

DATABASES = {"default": {**DATABASES["default"], "NAME": os.environ["RTCSTREAM_STANDALONE_DB"]}}
