"""Operations (issue 9, C5 and C6).

Mail: queued outbox rows become durable work: `next_attempt_at` (not before: the backoff
after a failure, or the lease of an attempt under way) and `dispatched_at` (when a delivery
message was last sent). Rows queued before this revision are due at once, so the scheduler
delivers them even though the messages that named them are gone.

Revision ID: 0008
Revises: 0005_names_per_owner
Create Date: 2026-12-06 19:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0008"
down_revision = "0005_names_per_owner"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_outbox_messages_next_attempt_at"), ["next_attempt_at"], unique=False
        )
    outbox = sa.table(
        "outbox_messages",
        sa.column("status", sa.String),
        sa.column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        outbox.update()
        .where(outbox.c.status == "queued")
        .values(next_attempt_at=outbox.c.created_at)
    )


def downgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_messages_next_attempt_at"))
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("next_attempt_at")
