"""A worker starts without the heavy imports; the warm-up and first requests pay them."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

from django.urls import URLPattern, get_resolver
from django.utils.module_loading import import_string

ROOT = Path(__file__).resolve().parent.parent

HEAVY = ["aiortc", "av", "numpy", "rest_framework.serializers", "psycopg",
         "django_rtcstream.sessions.runtime"]


def test_building_the_app_and_loading_the_urlconf_import_no_media_or_drf_serializers():
    script = (
        "import json, sys\n"
        "from tests.asgi import application\n"
        "from django.urls import get_resolver\n"
        "get_resolver().resolve('/rtc/flip/config')\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True,
                         text=True, check=True, timeout=60)
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
