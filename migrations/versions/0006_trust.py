"""Trust what we issue (issue 9, B2/B3): the audit chain's head carries an HMAC under the
audit key (so truncating the log needs the key); sign-in failures are counted per address
and per (login, address) in signin_throttles, replacing the per-account hard lock
(admins.failed_logins, admins.locked_until) that let anyone lock an administrator out.

Revision ID: 0006_trust
Revises: 0005_names_per_owner
Create Date: 2026-11-28 09:00:00

"""
import hashlib
import hmac

from alembic import op
import sqlalchemy as sa
from flask import current_app


# revision identifiers, used by Alembic.
revision = "0006_trust"
down_revision = "0005_names_per_owner"
branch_labels = None
depends_on = None


def _head_mac(key, seq, last_hash):
    # The same value as app.services.audit.head_mac (kept here so the migration is frozen).
    message = f"certwright-audit-head:{seq}:{last_hash}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def upgrade():
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mac", sa.String(length=64), nullable=False, server_default=""))
    # Authenticate the head as it stands: the rows behind it are checked by the chain
    # itself, so `audit verify` still finds any earlier tampering.
    key = str(current_app.config["CW_AUDIT_KEY"]).encode()
    conn = op.get_bind()
    for row in conn.execute(sa.text("SELECT id, seq, hash FROM audit_head")).all():
        conn.execute(
            sa.text("UPDATE audit_head SET mac = :mac WHERE id = :id"),
            {"mac": _head_mac(key, row.seq, row.hash), "id": row.id},
        )
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.alter_column("mac", server_default=None)

    op.create_table(
        "signin_throttles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("login", sa.String(length=64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signin_throttles")),
        sa.UniqueConstraint("address", "login", name=op.f("uq_signin_throttles_address")),
    )
    with op.batch_alter_table("signin_throttles", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signin_throttles_last_failure_at"), ["last_failure_at"], unique=False
        )
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")


def downgrade():
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("admins", schema=None) as batch_op:
        batch_op.alter_column("failed_logins", server_default=None)
    with op.batch_alter_table("signin_throttles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signin_throttles_last_failure_at"))
    op.drop_table("signin_throttles")
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("mac")
