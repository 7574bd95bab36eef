import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django_app = get_asgi_application()

from django_rtcstream.asgi import rtcstream_application  # noqa: E402

application = rtcstream_application(django_app, prefix="rtc/")

# Test-only knobs for a server subprocess (tests/churn.py, tests/test_leaks.py).
if os.environ.get("RTCSTREAM_TEST_CONSENT_INTERVAL"):
    # aioice checks a peer's consent every ~5 s and gives up after 6 misses (~30 s):
    # a killed client is noticed that late. A shorter interval finds it in seconds.
    import aioice.ice

    aioice.ice.CONSENT_INTERVAL = float(os.environ["RTCSTREAM_TEST_CONSENT_INTERVAL"])
if os.environ.get("RTCSTREAM_TEST_DEBUG_DUMP"):
    from tests import debug_hook

    debug_hook.install(os.environ["RTCSTREAM_TEST_DEBUG_DUMP"])
