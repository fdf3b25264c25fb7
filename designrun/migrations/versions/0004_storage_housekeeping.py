"""storage housekeeping: pending object deletions and the orphan sweep's lease

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-07

storage_deletions is the outbox of object deletions (a run's prefix is deleted after the run's
transaction commits; a failed deletion stays here and is retried by the orphan sweep).
storage_sweeps holds each sweep's lease (fencing token) and listing cursor.

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'storage_deletions',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('prefix', sa.String(length=1024), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('storage_deletions', schema=None) as batch_op:
        batch_op.create_index('ix_storage_deletions_due', ['next_attempt_at'], unique=False)
    op.create_table(
        'storage_sweeps',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('claimed_until', sa.DateTime(), nullable=True),
        sa.Column('cursor', sa.String(length=1024), nullable=True),
        sa.Column('next_run_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('name'),
    )


def downgrade():
    op.drop_table('storage_sweeps')
    with op.batch_alter_table('storage_deletions', schema=None) as batch_op:
        batch_op.drop_index('ix_storage_deletions_due')
    op.drop_table('storage_deletions')
