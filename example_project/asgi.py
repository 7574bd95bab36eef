"""ASGI entry point: ``daphne example_project.asgi:application``.

HTTP goes to Django, WebSockets (``ws/rtc/<stream>/``) to django-rtcstream's
signaling consumer.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
django_app = get_asgi_application()

from django.conf import settings  # noqa: E402

if settings.DEBUG:
    # Serve the admin's CSS/JS under plain daphne too (``runserver`` does it by itself).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_app = ASGIStaticFilesHandler(django_app)

from django_rtcstream.asgi import rtcstream_application  # noqa: E402

application = rtcstream_application(django_app, prefix="rtc/")
