"""A minimal Django project serving the benchmark's streams with django-rtcstream."""
