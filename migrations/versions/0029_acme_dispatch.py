"""ACME validation and issuance run straight from their dramatiq messages, without a job
row each: acme_challenges.dispatched_at and acme_orders.dispatched_at say when the message
was last sent, so that the scheduler sends it again when one was lost (a partial index on
each keeps that look-up to the rows being processed).

Challenges being validated by a job of the old kind (acme_validate) when this runs are
marked dispatched now, so that the scheduler sends their new message once RESEND_AFTER has
passed; those jobs are cancelled (nothing runs them any more).

Revision ID: 0029_acme_dispatch
Revises: 0028_dashboard_counts
Create Date: 2026-12-07 09:45:00

"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0029_acme_dispatch"
down_revision = "0028_dashboard_counts"
branch_labels = None
depends_on = None

PROCESSING = sa.text("status = 'processing'")


def upgrade():
    with op.batch_alter_table("acme_challenges", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("acme_orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_acme_challenges_processing",
        "acme_challenges",
        ["dispatched_at"],
        postgresql_where=PROCESSING,
        sqlite_where=PROCESSING,
    )
    op.create_index(
        "ix_acme_orders_processing",
        "acme_orders",
        ["dispatched_at"],
        postgresql_where=PROCESSING,
        sqlite_where=PROCESSING,
    )
    bind = op.get_bind()
    now = datetime.now(UTC)
    if bind.dialect.name == "sqlite":  # UTCDateTime keeps naive UTC there
        now = now.replace(tzinfo=None)
    stamp = sa.bindparam("now", now, type_=sa.DateTime(timezone=True))
    bind.execute(
        sa.text(
            "UPDATE acme_challenges SET dispatched_at = :now WHERE status = 'processing'"
        ).bindparams(stamp)
    )
    bind.execute(
        sa.text(
            "UPDATE jobs SET status = 'cancelled', finished_at = :now, message = "
            "'replaced by a message of its own (migration 0029_acme_dispatch)' "
            "WHERE kind = 'acme_validate' AND status IN ('pending', 'running')"
        ).bindparams(stamp)
    )


def downgrade():
    op.drop_index("ix_acme_orders_processing", table_name="acme_orders")
    op.drop_index("ix_acme_challenges_processing", table_name="acme_challenges")
    with op.batch_alter_table("acme_orders", schema=None) as batch_op:
        batch_op.drop_column("dispatched_at")
    with op.batch_alter_table("acme_challenges", schema=None) as batch_op:
        batch_op.drop_column("dispatched_at")
