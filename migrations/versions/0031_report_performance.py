"""Issue 13's performance targets.

(a) Dashboard month summary: certificate_month_counts, the
certificates by organization, department, type, origin and UTC month they were added
(created_at), for the "requests vs issued" panel, kept current by triggers on certificates
exactly like 0028_dashboard_counts' tables: each INSERT, UPDATE and DELETE appends +n / -n
rows (PostgreSQL: one statement-level trigger per operation over its transition table;
SQLite: row-level triggers); sums over the rows are the counts; the dashboard_counts job
folds them. The upgrade fills the table from the certificates already stored. On
PostgreSQL a TRUNCATE of certificates empties it, and it is vacuumed after 5,000 dead rows.

An index of certificate_expiry_counts by organization and expiry day (covering on
PostgreSQL): the dashboard's sums of the next year's days used a sequential scan of the
table (an RAO 17 ms, an MRAO 33 ms on 1,000,000 certificates under load; 0.7 and 4.8 ms
with it).

(b), (c) Report chunks are compressed with lz4 instead of pglz (PostgreSQL 14+ built with
lz4; otherwise stored uncompressed, out of line): pglz cost PostgreSQL about 14 ms of CPU
per MB written, lz4 about 2 (a 1,000,000-row CSV report is about 212 MB of chunks), for
a similar size. Chunks already stored keep their compression.

The downgrade drops the triggers, their functions and the table, and gives report_chunks
back the default compression and storage.

Revision ID: 0031_report_performance
Revises: 0030_upload_digest
Create Date: 2026-12-07 12:50:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0031_report_performance"
down_revision = "0030_upload_digest"
branch_labels = None
depends_on = None

GROUP = "organization_id, department_id, cert_type, origin"
PG_MONTH = "date_trunc('month', created_at AT TIME ZONE 'UTC')::date"
SQLITE_MONTH = "date({row}created_at, 'start of month')"

PG_FUNCTIONS = {
    "insert": f"""
        INSERT INTO certificate_month_counts ({GROUP}, month, n)
        SELECT {GROUP}, {PG_MONTH}, count(*) FROM cw_new WHERE created_at IS NOT NULL
        GROUP BY {GROUP}, 5;""",
    "delete": f"""
        INSERT INTO certificate_month_counts ({GROUP}, month, n)
        SELECT {GROUP}, {PG_MONTH}, -count(*) FROM cw_old WHERE created_at IS NOT NULL
        GROUP BY {GROUP}, 5;""",
    "update": f"""
        INSERT INTO certificate_month_counts ({GROUP}, month, n)
        SELECT {GROUP}, month, sum(d) FROM (
            SELECT {GROUP}, {PG_MONTH} AS month, -1 AS d FROM cw_old
            WHERE created_at IS NOT NULL
            UNION ALL
            SELECT {GROUP}, {PG_MONTH}, 1 FROM cw_new WHERE created_at IS NOT NULL
        ) AS delta GROUP BY {GROUP}, month HAVING sum(d) <> 0;""",
}
PG_TRANSITIONS = {
    "insert": "NEW TABLE AS cw_new",
    "delete": "OLD TABLE AS cw_old",
    "update": "OLD TABLE AS cw_old NEW TABLE AS cw_new",
}


def _sqlite_rows(row: str, sign: str) -> str:
    columns = ", ".join(f"{row}.{c.strip()}" for c in GROUP.split(","))
    month = SQLITE_MONTH.format(row=f"{row}.")
    return f"""
        INSERT INTO certificate_month_counts ({GROUP}, month, n)
        SELECT {columns}, {month}, {sign}1 WHERE {row}.created_at IS NOT NULL;"""


def upgrade():
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "certificate_month_counts",
        sa.Column("id", big, nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("cert_type", sa.String(length=16), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_month_counts")),
    )
    op.create_index(
        op.f("ix_certificate_month_counts_month"), "certificate_month_counts", ["month"]
    )
    # A scoped admin's expiry days: their organizations' rows, not a scan of every day's.
    op.create_index(
        "ix_certificate_expiry_counts_organization_id",
        "certificate_expiry_counts",
        ["organization_id", "expiry_day"],
        postgresql_include=["department_id", "cert_type", "status", "n"],
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "ALTER TABLE certificate_month_counts SET (autovacuum_vacuum_scale_factor = 0, "
            "autovacuum_vacuum_threshold = 5000, autovacuum_analyze_scale_factor = 0, "
            "autovacuum_analyze_threshold = 5000)"
        )
        op.execute("LOCK TABLE certificates IN SHARE MODE")  # no write between fill and triggers
        op.execute(
            "CREATE FUNCTION cw_certificate_month_counts_truncate() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN TRUNCATE certificate_month_counts; "
            "RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER cw_certificate_month_counts_truncate AFTER TRUNCATE ON certificates "
            "FOR EACH STATEMENT EXECUTE FUNCTION cw_certificate_month_counts_truncate()"
        )
        for operation, body in PG_FUNCTIONS.items():
            op.execute(
                f"CREATE FUNCTION cw_certificate_month_counts_{operation}() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER cw_certificate_month_counts_{operation} "
                f"AFTER {operation.upper()} ON certificates "
                f"REFERENCING {PG_TRANSITIONS[operation]} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION cw_certificate_month_counts_{operation}()"
            )
        month = PG_MONTH
        # lz4 where the server has it; else no compression at all (pglz is the costly one).
        op.execute(
            "DO $$ BEGIN "
            "EXECUTE 'ALTER TABLE report_chunks ALTER COLUMN data SET COMPRESSION lz4'; "
            "EXCEPTION WHEN OTHERS THEN "
            "EXECUTE 'ALTER TABLE report_chunks ALTER COLUMN data SET STORAGE EXTERNAL'; "
            "END $$"
        )
    else:
        op.execute(
            "CREATE TRIGGER cw_certificate_month_counts_insert AFTER INSERT ON certificates "
            f"BEGIN {_sqlite_rows('NEW', '')} END"
        )
        op.execute(
            "CREATE TRIGGER cw_certificate_month_counts_delete AFTER DELETE ON certificates "
            f"BEGIN {_sqlite_rows('OLD', '-')} END"
        )
        op.execute(
            f"CREATE TRIGGER cw_certificate_month_counts_update AFTER UPDATE OF {GROUP}, "
            f"created_at ON certificates "
            f"BEGIN {_sqlite_rows('OLD', '-')} {_sqlite_rows('NEW', '')} END"
        )
        month = SQLITE_MONTH.format(row="")
    op.execute(
        f"INSERT INTO certificate_month_counts ({GROUP}, month, n) "
        f"SELECT {GROUP}, {month}, count(*) FROM certificates WHERE created_at IS NOT NULL "
        f"GROUP BY {GROUP}, {month}"
    )


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute(
            "DO $$ BEGIN "
            "EXECUTE 'ALTER TABLE report_chunks ALTER COLUMN data SET COMPRESSION default'; "
            "EXCEPTION WHEN OTHERS THEN NULL; END $$"
        )
        op.execute("ALTER TABLE report_chunks ALTER COLUMN data SET STORAGE EXTENDED")
    for operation in (*PG_FUNCTIONS, "truncate"):
        if dialect == "postgresql":
            op.execute(
                f"DROP TRIGGER IF EXISTS cw_certificate_month_counts_{operation} ON certificates"
            )
            op.execute(f"DROP FUNCTION IF EXISTS cw_certificate_month_counts_{operation}()")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS cw_certificate_month_counts_{operation}")
    op.drop_index(op.f("ix_certificate_month_counts_month"), table_name="certificate_month_counts")
    op.drop_index(
        "ix_certificate_expiry_counts_organization_id", table_name="certificate_expiry_counts"
    )
    op.drop_table("certificate_month_counts")
