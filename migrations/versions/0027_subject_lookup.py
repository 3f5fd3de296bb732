"""Certificates by subject: an index on md5(subject_dn) (PostgreSQL), so that linking an
import's certificates to their issuers reads the candidates instead of the whole inventory.

Revision ID: 0027_subject_lookup
Revises: 0026_agent_limits
Create Date: 2026-12-07 09:40:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0027_subject_lookup"
down_revision = "0026_agent_limits"
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_certificates_subject_md5", "certificates", [sa.text("md5(subject_dn)")]
        )


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_certificates_subject_md5", table_name="certificates")
