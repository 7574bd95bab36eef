"""Settings for the Gradio UI tests' server process: the test project with its
own SQLite file, plus a stream declared with real Gradio components.

The Gradio UI runs in a process of its own so that the test process never
imports gradio (other tests check that the app does not).
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, RTCSTREAM

DATABASES = {"default": {**DATABASES["default"], "NAME": os.environ["RTCSTREAM_STANDALONE_DB"]}}
RTCSTREAM = {
    **RTCSTREAM,
    "STREAMS": {**RTCSTREAM["STREAMS"], "ui-outputs": "tests.browser.streams.ui_outputs"},
}
