from django.urls import include, path

urlpatterns = [path("rtc/", include("django_rtcstream.urls"))]
