"""Discovery phase two (issue 17): the protocol an endpoint was scanned as (STARTTLS
services), a task's protocol overrides and its rate cap, a running shard's in-flight credit
(progress on silent ranges).

Existing endpoints were all scanned as direct TLS ('tls'); existing tasks keep no rate cap.

Revision ID: 0022_discovery_services
Revises: 0019_notification_templates
Create Date: 2026-12-07 02:40:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0022_discovery_services"
down_revision = "0019_notification_templates"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("protocol", sa.String(length=16), server_default="tls", nullable=False)
        )
    with op.batch_alter_table("discovery_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rate", sa.Float(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("protocols", sa.Text(), server_default="", nullable=False))
    with op.batch_alter_table("scan_shards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("in_flight", sa.Float(), server_default="0", nullable=False))


def downgrade():
    with op.batch_alter_table("scan_shards", schema=None) as batch_op:
        batch_op.drop_column("in_flight")
    with op.batch_alter_table("discovery_tasks", schema=None) as batch_op:
        batch_op.drop_column("protocols")
        batch_op.drop_column("rate")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("protocol")
