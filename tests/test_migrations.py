"""The session table accepts the rows older releases write (rolling upgrades).

While workers are rolled one by one, some still run the previous release and insert
session rows without the columns added since. Each such column has a database
default, so those inserts succeed; the test inserts as the model was at every
earlier migration and reads the new columns back.
"""

from __future__ import annotations

import uuid

import pytest
from django.db.migrations.loader import MigrationLoader
from django.db.models.fields import NOT_PROVIDED
from django.utils import timezone

from django_rtcstream.models import StreamSession

pytestmark = pytest.mark.django_db

APP = "django_rtcstream"


def migrations_of_the_app() -> list[str]:
    loader = MigrationLoader(None)
    return sorted(name for app, name in loader.disk_migrations if app == APP)


def model_at(migration: str):
    """The session model as the release ending with ``migration`` knew it."""
    state = MigrationLoader(None).project_state((APP, migration))
    return state.apps.get_model(APP, "StreamSession")


@pytest.mark.parametrize("migration", migrations_of_the_app()[:-1])
def test_a_row_inserted_as_an_older_release_would_gets_the_new_columns_defaults(migration):
    old = model_at(migration)
    old_columns = {f.column for f in old._meta.concrete_fields}
    new_columns = {f.column for f in StreamSession._meta.concrete_fields} - old_columns
    webrtc_id = f"old-{uuid.uuid4().hex[:12]}"
    old.objects.create(
        id=uuid.uuid4(),
        webrtc_id=webrtc_id,
        stream="echo",
        state="connected",
        created_at=timezone.now(),
    )
    row = StreamSession.objects.get(webrtc_id=webrtc_id)
    for field in StreamSession._meta.concrete_fields:
        if field.column in new_columns:
            if field.null:
                expected = None
            elif field.has_default():
                expected = field.get_default()
            else:  # a database default only
                expected = getattr(field.db_default, "value", field.db_default)
            assert getattr(row, field.attname) == expected, field.name


def test_every_column_added_after_the_first_migration_has_a_database_default():
    first = {f.column for f in model_at("0001_stream_session")._meta.concrete_fields}
    missing = [
        f.name
        for f in StreamSession._meta.concrete_fields
        if f.column not in first and not f.null and f.db_default is NOT_PROVIDED
    ]
    assert missing == []
