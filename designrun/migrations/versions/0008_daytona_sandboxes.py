"""daytona sandboxes

Revision ID: 0008
Revises: 0004
Create Date: 2026-12-07

One row per run started in a Daytona sandbox (the ``daytona`` runner backend): the sandbox,
session and command ids, what the watchdog has seen, and its lease. Deliberately no foreign key
to runs: a deleted run's row is what lets the watchdog delete its sandbox afterwards.
A small named-lease table lets one process at a time sweep Daytona for orphaned sandboxes.

The backend name ``daytona`` now means a sandbox per run; rows written before this revision
with that name were job requests, renamed ``jobs`` here so that a trigger pending across the
upgrade is still sent as a job request.

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.execute("UPDATE triggers SET backend = 'jobs' WHERE backend = 'daytona'")
    op.execute("UPDATE runs SET dispatch_backend = 'jobs' WHERE dispatch_backend = 'daytona'")
    op.create_table(
        'daytona_sandboxes',
        sa.Column('run_id', sa.Uuid(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('sandbox_id', sa.String(length=255), nullable=True),
        sa.Column('session_id', sa.String(length=255), nullable=True),
        sa.Column('command_id', sa.String(length=255), nullable=True),
        sa.Column('exit_code', sa.Integer(), nullable=True),
        sa.Column('delete_after', sa.DateTime(), nullable=True),
        sa.Column('next_check_at', sa.DateTime(), nullable=False),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('run_id'),
    )
    with op.batch_alter_table('daytona_sandboxes', schema=None) as batch_op:
        batch_op.create_index('ix_daytona_sandboxes_due', ['next_check_at'], unique=False)

    op.create_table(
        'daytona_sweep_leases',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('last_run_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade():
    op.drop_table('daytona_sweep_leases')
    with op.batch_alter_table('daytona_sandboxes', schema=None) as batch_op:
        batch_op.drop_index('ix_daytona_sandboxes_due')
    op.drop_table('daytona_sandboxes')
