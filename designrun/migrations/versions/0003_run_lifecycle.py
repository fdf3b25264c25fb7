"""run lifecycle: failure reasons, heartbeats, retries, dispatch info, transitions

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

Runs gain the fields of API.md Part 2 "Run lifecycle" (failureReason, lastHeartbeatAt, retryOf,
dispatch, the runner's declared eventCount) and every status change is recorded in
run_transitions, in the same transaction as the change. Existing runs get dispatch state
"none" and no transitions (their history was never recorded).

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_reason', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('last_heartbeat_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('retry_of', sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column('expected_event_count', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('dispatch_backend', sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column('dispatch_state', sa.String(length=16), nullable=False, server_default='none')
        )
        batch_op.add_column(
            sa.Column('dispatch_attempts', sa.Integer(), nullable=False, server_default='0')
        )
        batch_op.add_column(sa.Column('dispatch_last_error', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('dispatched_at', sa.DateTime(), nullable=True))
        # The reapers look for active runs by status and age.
        batch_op.create_index('ix_runs_status_heartbeat', ['status', 'last_heartbeat_at'])

    op.create_table(
        'run_transitions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('run_id', sa.Uuid(), nullable=False),
        sa.Column('from_status', sa.String(length=16), nullable=False),
        sa.Column('to_status', sa.String(length=16), nullable=False),
        sa.Column('by', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=32), nullable=True),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('run_transitions', schema=None) as batch_op:
        batch_op.create_index('ix_run_transitions_run', ['run_id', 'id'], unique=False)


def downgrade():
    with op.batch_alter_table('run_transitions', schema=None) as batch_op:
        batch_op.drop_index('ix_run_transitions_run')
    op.drop_table('run_transitions')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_status_heartbeat')
        for column in (
            'dispatched_at', 'dispatch_last_error', 'dispatch_attempts', 'dispatch_state',
            'dispatch_backend', 'expected_event_count', 'retry_of', 'last_heartbeat_at',
            'failure_reason',
        ):
            batch_op.drop_column(column)
