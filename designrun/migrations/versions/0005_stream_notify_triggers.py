"""live tail: NOTIFY on new events and run changes (PostgreSQL only)

Revision ID: 0005
Revises: 0008
Create Date: 2026-12-07

Each serving process's stream waiter (designrun/services/streams.py) LISTENs on the channel
``designrun_stream``; these triggers send it the run id when events are inserted (one
notification per statement and run, so a batch of 1000 events is one) and when a run's status,
progress or row changes or the run is deleted. The writers' Python code is untouched: whatever
writes events or runs (any process, any host, psql) wakes the streams. PostgreSQL also folds
identical notifications of one transaction into one.

SQLite has no NOTIFY: there the waiter polls ``PRAGMA data_version``, so this migration does
nothing on SQLite.

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0005'
down_revision = '0008'
branch_labels = None
depends_on = None


UPGRADE = [
    """
    CREATE OR REPLACE FUNCTION designrun_notify_events() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('designrun_stream', changed.run_id::text)
        FROM (SELECT DISTINCT run_id FROM new_events) AS changed;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER run_events_notify_stream
    AFTER INSERT ON run_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION designrun_notify_events()
    """,
    """
    CREATE OR REPLACE FUNCTION designrun_notify_run() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            PERFORM pg_notify('designrun_stream', OLD.id::text);
        ELSE
            PERFORM pg_notify('designrun_stream', NEW.id::text);
        END IF;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER runs_notify_stream_update
    AFTER UPDATE ON runs
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.progress IS DISTINCT FROM NEW.progress
          OR OLD.updated_at IS DISTINCT FROM NEW.updated_at)
    EXECUTE FUNCTION designrun_notify_run()
    """,
    """
    CREATE TRIGGER runs_notify_stream_delete
    AFTER DELETE ON runs
    FOR EACH ROW EXECUTE FUNCTION designrun_notify_run()
    """,
]

DOWNGRADE = [
    "DROP TRIGGER IF EXISTS runs_notify_stream_delete ON runs",
    "DROP TRIGGER IF EXISTS runs_notify_stream_update ON runs",
    "DROP TRIGGER IF EXISTS run_events_notify_stream ON run_events",
    "DROP FUNCTION IF EXISTS designrun_notify_run()",
    "DROP FUNCTION IF EXISTS designrun_notify_events()",
]


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    for statement in UPGRADE:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    for statement in DOWNGRADE:
        op.execute(statement)
