"""Trust what we issue (issue 9, B2): the audit chain's head carries an HMAC under the
audit key (so truncating the log needs the key).

Revision ID: 0007
Revises: 0005_names_per_owner
Create Date: 2026-11-28 09:00:00

"""
import hashlib
import hmac

from alembic import op
import sqlalchemy as sa
from flask import current_app


# revision identifiers, used by Alembic.
revision = "0007"
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


def downgrade():
    with op.batch_alter_table("audit_head", schema=None) as batch_op:
        batch_op.drop_column("mac")
