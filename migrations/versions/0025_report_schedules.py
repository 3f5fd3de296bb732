"""Scheduled reports (issue 13 §4): report_schedules (a report, its recurrence, recipients,
its owner whose scope it runs with), reports.report_schedule_id / schedule_job_id (which
schedule and which scheduler job started a report: a job run twice starts one report), and
an attachment on outbox messages (a scheduled report mailed as a file), and
report_chunks.summary (counts of a chunk's chart columns, for the charts of the HTML view
and export).

The downgrade drops the table and the columns; nothing else changes.

Revision ID: 0025_report_schedules
Revises: 0025_scan_agents
Create Date: 2026-12-07 06:00:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0025_report_schedules"
down_revision = "0025_scan_agents"
branch_labels = None
depends_on = None


def _utc():
    return sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "report_schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("report_type", sa.String(length=48), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("bom", sa.Boolean(), nullable=False),
        sa.Column("filters", sa.JSON(), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("period_days", sa.Integer(), nullable=True),
        sa.Column("schedule", sa.JSON(), nullable=False),
        sa.Column("recipients", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("last_report_id", sa.Integer(), nullable=True),
        sa.Column("last_run_at", _utc(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["admins.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_report_schedules_owner_id", "report_schedules", ["owner_id"])
    op.create_index(
        "ix_report_schedules_organization_id", "report_schedules", ["organization_id"]
    )
    with op.batch_alter_table("reports") as batch:
        batch.add_column(sa.Column("report_schedule_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("schedule_job_id", sa.Integer(), nullable=True))
        batch.create_index("ix_reports_report_schedule_id", ["report_schedule_id"])
        batch.create_unique_constraint("uq_reports_schedule_job_id", ["schedule_job_id"])
    op.add_column(
        "outbox_messages",
        sa.Column("attachment_name", sa.String(length=255), nullable=False, server_default=""),
    )
    op.add_column(
        "outbox_messages",
        sa.Column("attachment_type", sa.String(length=128), nullable=False, server_default=""),
    )
    op.add_column("outbox_messages", sa.Column("attachment", sa.LargeBinary(), nullable=True))
    op.add_column("report_chunks", sa.Column("summary", sa.JSON(), nullable=True))


def downgrade():
    op.execute(sa.text("ALTER TABLE report_chunks DROP COLUMN summary"))
    op.execute(sa.text("ALTER TABLE outbox_messages DROP COLUMN attachment"))
    op.execute(sa.text("ALTER TABLE outbox_messages DROP COLUMN attachment_type"))
    op.execute(sa.text("ALTER TABLE outbox_messages DROP COLUMN attachment_name"))
    with op.batch_alter_table("reports") as batch:
        batch.drop_constraint("uq_reports_schedule_job_id", type_="unique")
        batch.drop_index("ix_reports_report_schedule_id")
        batch.drop_column("schedule_job_id")
        batch.drop_column("report_schedule_id")
    op.drop_index("ix_report_schedules_organization_id", table_name="report_schedules")
    op.drop_index("ix_report_schedules_owner_id", table_name="report_schedules")
    op.drop_table("report_schedules")
