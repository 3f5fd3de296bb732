"""ACME accounts: when each account last signed a request (the console's per-account view,
"Last used"), written at most once a minute per account.

Revision ID: 0025_acme_last_used
Revises: 0024_hygiene
Create Date: 2026-12-07 05:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0025_acme_last_used"
down_revision = "0024_hygiene"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("acme_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("acme_accounts", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
