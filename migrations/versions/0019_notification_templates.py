"""Per-organization notification templates (issue 12 §5) kept with the portal's mail
templates: an optional HTML part next to the plain text, and kind names long enough for
``digest.code_signing_expiration``.

Revision ID: 0019_notification_templates
Revises: 0018_notifications
Create Date: 2026-12-07 02:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0019_notification_templates"
down_revision = "0018_notifications"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("mail_templates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("html", sa.Text(), nullable=False, server_default=""))
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=32), type_=sa.String(length=64)
        )


def downgrade():
    op.execute("DELETE FROM mail_templates WHERE kind LIKE 'notice.%' OR kind LIKE 'digest.%'")
    with op.batch_alter_table("mail_templates", schema=None) as batch_op:
        batch_op.alter_column(
            "kind", existing_type=sa.String(length=64), type_=sa.String(length=32)
        )
        batch_op.drop_column("html")
