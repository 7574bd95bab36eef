"""``python -m tests.browser.standalone_ui <stream> <port>``: migrate, then
``stream.ui.launch()`` as a user would from a shell with Django set up."""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.browser.settings_standalone")
django.setup()

from django.core.management import call_command  # noqa: E402

from django_rtcstream.registry import get_stream  # noqa: E402

call_command("migrate", verbosity=0)
get_stream(sys.argv[1]).ui.launch(server_port=int(sys.argv[2]))
