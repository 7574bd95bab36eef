"""Database defaults for the columns added after 0001.

During a rolling upgrade, workers still on an older release insert session rows
without the newer columns; without a default in the database those inserts fail.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_rtcstream", "0005_stream_session_stats"),
    ]

    operations = [
        migrations.AlterField(
            model_name="streamsession",
            name="call_sid",
            field=models.CharField(
                blank=True, db_default="", max_length=64, verbose_name="call sid"
            ),
        ),
        migrations.AlterField(
            model_name="streamsession",
            name="interruptions",
            field=models.PositiveIntegerField(
                db_default=0, default=0, verbose_name="interruptions"
            ),
        ),
        migrations.AlterField(
            model_name="streamsession",
            name="stats",
            field=models.JSONField(
                blank=True, db_default={}, default=dict, verbose_name="latest stats"
            ),
        ),
        migrations.AlterField(
            model_name="streamsession",
            name="stats_history",
            field=models.JSONField(
                blank=True, db_default={}, default=dict, verbose_name="stats history"
            ),
        ),
        migrations.AlterField(
            model_name="streamsession",
            name="stats_summary",
            field=models.JSONField(
                blank=True, db_default={}, default=dict, verbose_name="stats summary"
            ),
        ),
        migrations.AlterField(
            model_name="streamsession",
            name="stuck_calls",
            field=models.PositiveIntegerField(
                db_default=0, default=0, verbose_name="stuck handler calls"
            ),
        ),
        migrations.AlterField(
            model_name="streamsession",
            name="token_hash",
            field=models.CharField(blank=True, db_default="", editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="streamsession",
            name="turns",
            field=models.PositiveIntegerField(db_default=0, default=0, verbose_name="turns"),
        ),
    ]
