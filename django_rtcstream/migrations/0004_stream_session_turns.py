from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_rtcstream", "0003_stream_session_stuck_calls"),
    ]

    operations = [
        migrations.AddField(
            model_name="streamsession",
            name="turns",
            field=models.PositiveIntegerField(default=0, verbose_name="turns"),
        ),
        migrations.AddField(
            model_name="streamsession",
            name="interruptions",
            field=models.PositiveIntegerField(default=0, verbose_name="interruptions"),
        ),
    ]
