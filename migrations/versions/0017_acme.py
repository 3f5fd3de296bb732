"""ACME (issue 15, RFC 8555): EAB keys, accounts, nonces, orders, authorizations and
challenges; certificate_profiles.acme_slug (set: the profile has an ACME directory at
/acme/<slug>/directory).

Schema only; the downgrade drops the tables and the column (ACME data is lost, the
certificates it produced stay in the inventory: they are ordinary certificate rows).

Revision ID: 0017_acme
Revises: 0016_import
Create Date: 2026-12-06 22:54:58

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017_acme'
down_revision = '0016_import'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('acme_nonces',
    sa.Column('value', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('value', name=op.f('pk_acme_nonces'))
    )
    with op.batch_alter_table('acme_nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_acme_nonces_expires_at'), ['expires_at'], unique=False)

    op.create_table('acme_external_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('sealed_hmac_key', sa.LargeBinary(), nullable=False),
    sa.Column('label', sa.String(length=128), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('revoked_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['admins.id'], name=op.f('fk_acme_external_keys_created_by_id_admins'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_acme_external_keys_department_id_departments')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_acme_external_keys_organization_id_organizations')),
    sa.ForeignKeyConstraint(['revoked_by_id'], ['admins.id'], name=op.f('fk_acme_external_keys_revoked_by_id_admins'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acme_external_keys')),
    sa.UniqueConstraint('key_id', name=op.f('uq_acme_external_keys_key_id'))
    )
    with op.batch_alter_table('acme_external_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_acme_external_keys_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_acme_external_keys_organization_id'), ['organization_id'], unique=False)

    op.create_table('acme_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('thumbprint', sa.String(length=64), nullable=False),
    sa.Column('jwk', sa.JSON(), nullable=False),
    sa.Column('contact', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('external_key_id', sa.Integer(), nullable=False),
    sa.Column('organization_id', sa.Integer(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('user_agent', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_acme_accounts_department_id_departments')),
    sa.ForeignKeyConstraint(['external_key_id'], ['acme_external_keys.id'], name=op.f('fk_acme_accounts_external_key_id_acme_external_keys')),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_acme_accounts_organization_id_organizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acme_accounts')),
    sa.UniqueConstraint('thumbprint', name=op.f('uq_acme_accounts_thumbprint'))
    )
    with op.batch_alter_table('acme_accounts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_acme_accounts_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_acme_accounts_external_key_id'), ['external_key_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_acme_accounts_organization_id'), ['organization_id'], unique=False)

    op.create_table('acme_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('profile_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('identifiers', sa.JSON(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=True),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('user_agent', sa.String(length=255), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['acme_accounts.id'], name=op.f('fk_acme_orders_account_id_acme_accounts')),
    sa.ForeignKeyConstraint(['profile_id'], ['certificate_profiles.id'], name=op.f('fk_acme_orders_profile_id_certificate_profiles')),
    sa.ForeignKeyConstraint(['request_id'], ['certificate_requests.id'], name=op.f('fk_acme_orders_request_id_certificate_requests')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acme_orders'))
    )
    with op.batch_alter_table('acme_orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_acme_orders_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_acme_orders_profile_id'), ['profile_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_acme_orders_request_id'), ['request_id'], unique=False)

    op.create_table('acme_authorizations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('identifier', sa.String(length=253), nullable=False),
    sa.Column('wildcard', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['acme_orders.id'], name=op.f('fk_acme_authorizations_order_id_acme_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acme_authorizations'))
    )
    with op.batch_alter_table('acme_authorizations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_acme_authorizations_order_id'), ['order_id'], unique=False)

    op.create_table('acme_challenges',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('authorization_id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=16), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('validated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['authorization_id'], ['acme_authorizations.id'], name=op.f('fk_acme_challenges_authorization_id_acme_authorizations')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_acme_challenges'))
    )
    with op.batch_alter_table('acme_challenges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_acme_challenges_authorization_id'), ['authorization_id'], unique=False)

    # Plain ADD COLUMN and a unique index (no batch table copy): on SQLite a copy of
    # certificate_profiles fails while requests and certificates refer to it.
    op.add_column('certificate_profiles', sa.Column('acme_slug', sa.String(length=63), nullable=True))
    op.create_index(op.f('ix_certificate_profiles_acme_slug'), 'certificate_profiles', ['acme_slug'], unique=True)



def downgrade():
    op.drop_index(op.f('ix_certificate_profiles_acme_slug'), table_name='certificate_profiles')
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too), not a batch table copy: see upgrade().
    op.execute(sa.text("ALTER TABLE certificate_profiles DROP COLUMN acme_slug"))

    with op.batch_alter_table('acme_challenges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_acme_challenges_authorization_id'))

    op.drop_table('acme_challenges')
    with op.batch_alter_table('acme_authorizations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_acme_authorizations_order_id'))

    op.drop_table('acme_authorizations')
    with op.batch_alter_table('acme_orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_acme_orders_request_id'))
        batch_op.drop_index(batch_op.f('ix_acme_orders_profile_id'))
        batch_op.drop_index(batch_op.f('ix_acme_orders_account_id'))

    op.drop_table('acme_orders')
    with op.batch_alter_table('acme_accounts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_acme_accounts_organization_id'))
        batch_op.drop_index(batch_op.f('ix_acme_accounts_external_key_id'))
        batch_op.drop_index(batch_op.f('ix_acme_accounts_department_id'))

    op.drop_table('acme_accounts')
    with op.batch_alter_table('acme_external_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_acme_external_keys_organization_id'))
        batch_op.drop_index(batch_op.f('ix_acme_external_keys_department_id'))

    op.drop_table('acme_external_keys')
    with op.batch_alter_table('acme_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_acme_nonces_expires_at'))

    op.drop_table('acme_nonces')
