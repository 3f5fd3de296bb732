"""SCM REST API v1 (issue 14): API administrators (admins.kind, admins.api_networks),
replayable enroll answers (api_idempotency_keys), per-admin call counts for rate limiting
(api_rate_windows), the names a delegation allows (delegations.request_privileges) and
domain control validation state on domains.

Revision ID: 0014_api
Revises: 0012_persons
Create Date: 2026-12-06 20:30:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0014_api"
down_revision = "0012_persons"
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMN (no batch table copy): on SQLite a copy of admins, delegations or
    # domains fails while other rows refer to them (foreign keys are on), as 0010 found.
    op.add_column(
        "admins",
        sa.Column("kind", sa.String(length=8), nullable=False, server_default="STANDARD"),
    )
    op.add_column("admins", sa.Column("api_networks", sa.JSON(), nullable=True))
    op.add_column("delegations", sa.Column("request_privileges", sa.JSON(), nullable=True))
    for column in (
        sa.Column("dcv_method", sa.String(length=8), nullable=False, server_default=""),
        sa.Column("dcv_validated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dcv_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "dcv_order_status", sa.String(length=16), nullable=False, server_default="NOT_INITIATED"
        ),
        sa.Column("dcv_order_method", sa.String(length=8), nullable=False, server_default=""),
        sa.Column("dcv_token", sa.String(length=64), nullable=False, server_default=""),
    ):
        op.add_column("domains", column)

    op.create_table(
        "api_idempotency_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=160), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["admin_id"],
            ["admins.id"],
            name=op.f("fk_api_idempotency_keys_admin_id_admins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_idempotency_keys")),
        sa.UniqueConstraint("admin_id", "key", name=op.f("uq_api_idempotency_keys_admin_id")),
    )
    with op.batch_alter_table("api_idempotency_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_idempotency_keys_created_at"), ["created_at"], unique=False
        )

    op.create_table(
        "api_rate_windows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("admin_id", sa.Integer(), nullable=False),
        sa.Column("window", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["admin_id"],
            ["admins.id"],
            name=op.f("fk_api_rate_windows_admin_id_admins"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_rate_windows")),
        sa.UniqueConstraint("admin_id", "window", name=op.f("uq_api_rate_windows_admin_id")),
    )


def downgrade():
    op.drop_table("api_rate_windows")
    with op.batch_alter_table("api_idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_api_idempotency_keys_created_at"))
    op.drop_table("api_idempotency_keys")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too), not a batch table copy: see upgrade().
    columns = {
        "domains": (
            "dcv_token",
            "dcv_order_method",
            "dcv_order_status",
            "dcv_expires_at",
            "dcv_validated_at",
            "dcv_method",
        ),
        "delegations": ("request_privileges",),
        "admins": ("api_networks", "kind"),
    }
    for table, names in columns.items():
        for column in names:
            op.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
