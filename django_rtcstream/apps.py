from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RtcStreamConfig(AppConfig):
    name = "django_rtcstream"
    verbose_name = _("RTC streams")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from django_rtcstream import checks as rtc_checks

        checks.register(rtc_checks.check_settings, "django_rtcstream")
        checks.register(rtc_checks.check_streams, "django_rtcstream")
        checks.register(rtc_checks.check_deploy, "django_rtcstream", deploy=True)
        # daphne imports Twisted, which breaks Gradio components: see contrib.gradio.compat.
        from django_rtcstream.contrib.gradio.compat import repair_abc

        repair_abc()
