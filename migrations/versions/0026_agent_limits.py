"""Per-agent caps (issue 17 §3): scan_agents.max_rate and max_in_flight (set by an MRAO,
carried to the agent with every shard) and host_max_rate, host_max_in_flight (the agent
host's own ceilings, from its heartbeats); scan_shards.agent_done (an agent's "done" that
came before its last batches).

Revision ID: 0026_agent_limits
Revises: 0025_report_schedules
Create Date: 2026-12-07 09:40:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0026_agent_limits"
down_revision = "0025_report_schedules"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("scan_agents") as batch:
        batch.add_column(sa.Column("host_max_rate", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("host_max_in_flight", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("max_rate", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("max_in_flight", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("scan_shards") as batch:
        batch.add_column(sa.Column("agent_done", sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table("scan_shards") as batch:
        batch.drop_column("agent_done")
    with op.batch_alter_table("scan_agents") as batch:
        batch.drop_column("max_in_flight")
        batch.drop_column("max_rate")
        batch.drop_column("host_max_in_flight")
        batch.drop_column("host_max_rate")
