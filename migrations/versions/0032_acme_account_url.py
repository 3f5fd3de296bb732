"""CAA's accounturi parameter (RFC 8657 §3) names an ACME account by its URL: the URL the
client used when it responded to a challenge (its kid, built from the request's host like
every URL of the directory) is kept on the challenge, acme_challenges.account_url, for the
worker that checks CAA. Challenges answered before have none (an accounturi then admits
nothing).

Revision ID: 0032_acme_account_url
Revises: 0031_report_performance
Create Date: 2026-12-07 16:30:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = "0032_acme_account_url"
down_revision = "0031_report_performance"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("acme_challenges", schema=None) as batch_op:
        batch_op.add_column(sa.Column("account_url", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("acme_challenges", schema=None) as batch_op:
        batch_op.drop_column("account_url")
