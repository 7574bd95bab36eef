"""A worker starts without the heavy imports; the warm-up and first requests pay them."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.urls import URLPattern, get_resolver
from django.utils.module_loading import import_string

ROOT = Path(__file__).resolve().parent.parent

HEAVY = [
    "aiortc",
    "av",
    "numpy",
    "rest_framework.serializers",
    "psycopg",
    "django_rtcstream.sessions.runtime",
]


def test_building_the_app_and_loading_the_urlconf_import_no_media_or_drf_serializers():
    script = (
        "import json, sys\n"
        "from tests.asgi import application\n"
        "from django.urls import get_resolver\n"
        "get_resolver().resolve('/rtc/flip/config')\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def _patterns(resolver):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLPattern):
            yield entry
        else:
            yield from _patterns(entry)


def test_lazy_views_declare_what_the_real_views_are():
    lazy = [p.callback for p in _patterns(get_resolver()) if hasattr(p.callback, "lazy_target")]
    assert len(lazy) == 6
    for view in lazy:
        dotted, actions = view.lazy_target
        target = import_string(dotted)
        real = target.as_view(actions) if actions is not None else target
        assert inspect.iscoroutinefunction(view) == inspect.iscoroutinefunction(real), dotted
        assert view.csrf_exempt == getattr(real, "csrf_exempt", False), dotted


def test_trickle_helpers_work_outside_a_django_process():
    # StreamClient(trickle=True) in a plain script: no settings, no ImproperlyConfigured.
    code = textwrap.dedent("""
        import asyncio, os
        os.environ.pop("DJANGO_SETTINGS_MODULE", None)
        from aiortc import RTCPeerConnection
        from django_rtcstream.media.ice import local_candidates, parse_candidate

        async def main():
            pc = RTCPeerConnection()
            pc.addTransceiver("audio")
            await pc.setLocalDescription(await pc.createOffer())
            found = local_candidates(pc)
            await pc.close()
            return found

        found = asyncio.run(main())
        assert found and all(parse_candidate(c) is not None for c in found), found
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("freeze", [True, False])
def test_the_warm_up_freezes_the_import_time_heap(freeze, settings):
    """A full pass of the collector over the unfrozen heap of a test worker took
    100-300 ms, holding the GIL: the fuzz tests' live echo had gaps of 294 ms."""
    import gc

    from django_rtcstream.asgi import warm_up

    settings.RTCSTREAM = {**settings.RTCSTREAM, "GC_FREEZE": freeze}
    gc.unfreeze()
    try:
        warm_up()
        assert (gc.get_freeze_count() > 10_000) is freeze
    finally:
        gc.unfreeze()
