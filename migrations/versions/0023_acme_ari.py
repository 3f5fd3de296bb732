"""ACME renewal information (RFC 9773): an order keeps the certificate it replaces
(`replaces`, its ARI identifier, and the certificate row), so that a second order
replacing the same certificate is refused (alreadyReplaced).

Revision ID: 0023_acme_ari
Revises: 0022_discovery_services
Create Date: 2026-12-07 02:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0023_acme_ari"
down_revision = "0022_discovery_services"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('acme_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('replaces', sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column('replaces_certificate_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_acme_orders_replaces_certificate_id'), ['replaces_certificate_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_acme_orders_replaces_certificate_id_certificates'), 'certificates', ['replaces_certificate_id'], ['id'])


def downgrade():
    with op.batch_alter_table('acme_orders', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_acme_orders_replaces_certificate_id_certificates'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_acme_orders_replaces_certificate_id'))
        batch_op.drop_column('replaces_certificate_id')
        batch_op.drop_column('replaces')
