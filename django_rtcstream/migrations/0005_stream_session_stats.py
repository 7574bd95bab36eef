from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_rtcstream", "0004_stream_session_turns"),
    ]

    operations = [
        migrations.AddField(
            model_name="streamsession",
            name="stats",
            field=models.JSONField(blank=True, default=dict, verbose_name="latest stats"),
        ),
        migrations.AddField(
            model_name="streamsession",
            name="stats_history",
            field=models.JSONField(blank=True, default=dict, verbose_name="stats history"),
        ),
        migrations.AddField(
            model_name="streamsession",
            name="stats_summary",
            field=models.JSONField(blank=True, default=dict, verbose_name="stats summary"),
        ),
    ]
