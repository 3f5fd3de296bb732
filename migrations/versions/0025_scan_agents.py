"""Scanning agents (issue 17 §1): scan_agents (name, allow-list, Ed25519 public key,
heartbeat facts, enabled), agent_receipts (digests of accepted signed messages, against
replays) and scan_shards.batches_received (an agent's "done" waits for its batches).

Revision ID: 0025_scan_agents
Revises: 0025_acme_last_used
Create Date: 2026-12-07 06:10:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0025_scan_agents"
down_revision = "0025_acme_last_used"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "scan_agents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("allowed_ranges", sa.Text(), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("capacity", sa.Integer(), server_default="2", nullable=False),
        sa.Column("in_flight", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["admins.id"],
            name=op.f("fk_scan_agents_created_by_id_admins"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_agents")),
        sa.UniqueConstraint("name", name=op.f("uq_scan_agents_name")),
    )
    op.create_table(
        "agent_receipts",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["agent_id"],
            ["scan_agents.id"],
            name=op.f("fk_agent_receipts_agent_id_scan_agents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("digest", name=op.f("pk_agent_receipts")),
    )
    op.create_index(
        op.f("ix_agent_receipts_received_at"), "agent_receipts", ["received_at"], unique=False
    )
    with op.batch_alter_table("scan_shards", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("batches_received", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade():
    with op.batch_alter_table("scan_shards", schema=None) as batch_op:
        batch_op.drop_column("batches_received")
    op.drop_index(op.f("ix_agent_receipts_received_at"), table_name="agent_receipts")
    op.drop_table("agent_receipts")
    op.drop_table("scan_agents")
