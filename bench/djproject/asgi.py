"""``daphne bench.djproject.asgi:application`` (from the repository root)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.djproject.settings")
django_app = get_asgi_application()

from django_rtcstream.asgi import rtcstream_application  # noqa: E402

application = rtcstream_application(django_app, prefix="rtc/")
