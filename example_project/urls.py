from django.contrib import admin
from django.urls import include, path

from example_project import views

urlpatterns = [
    path("", views.index, name="index"),  # a custom route of the project's own
    path("admin/", admin.site.urls),
    path("rtc/", include("django_rtcstream.urls")),
]
