"""Dashboard summary tables (issue 13, performance (a)): certificate_counts (certificates
by organization, department, type, status, origin, issuer, key type and signature
algorithm) and certificate_expiry_counts (live certificates, Issued or External, by UTC
expiry day), kept current by triggers on certificates: each INSERT, UPDATE and DELETE
appends +n / -n rows (PostgreSQL: one statement-level trigger per operation over its
transition table, so a bulk insert adds one row per group, and an update that changes no
counted column adds nothing; SQLite: row-level triggers). Sums over the rows are the
counts; the dashboard_counts job folds them. The upgrade fills both tables from the
certificates already stored. On PostgreSQL a TRUNCATE of certificates empties both (it
fires no DELETE trigger), and both tables are vacuumed after 5,000 dead rows
(each fold rewrites them).

The downgrade drops the triggers, their functions and the tables.

Revision ID: 0028_dashboard_counts
Revises: 0027_subject_lookup
Create Date: 2026-12-07 09:30:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0028_dashboard_counts"
down_revision = "0027_subject_lookup"
branch_labels = None
depends_on = None

GROUP = "organization_id, department_id, cert_type, status, origin, issuer_cn, key_type, signature_algorithm"
EXPIRY_GROUP = "organization_id, department_id, cert_type, status"
LIVE = "('Issued', 'External')"

PG_FUNCTIONS = {
    "insert": f"""
        INSERT INTO certificate_counts ({GROUP}, n)
        SELECT {GROUP}, count(*) FROM cw_new GROUP BY {GROUP};
        INSERT INTO certificate_expiry_counts ({EXPIRY_GROUP}, expiry_day, n)
        SELECT {EXPIRY_GROUP}, (not_after AT TIME ZONE 'UTC')::date, count(*) FROM cw_new
        WHERE status IN {LIVE} GROUP BY {EXPIRY_GROUP}, 5;""",
    "delete": f"""
        INSERT INTO certificate_counts ({GROUP}, n)
        SELECT {GROUP}, -count(*) FROM cw_old GROUP BY {GROUP};
        INSERT INTO certificate_expiry_counts ({EXPIRY_GROUP}, expiry_day, n)
        SELECT {EXPIRY_GROUP}, (not_after AT TIME ZONE 'UTC')::date, -count(*) FROM cw_old
        WHERE status IN {LIVE} GROUP BY {EXPIRY_GROUP}, 5;""",
    "update": f"""
        INSERT INTO certificate_counts ({GROUP}, n)
        SELECT {GROUP}, sum(d) FROM (
            SELECT {GROUP}, -1 AS d FROM cw_old UNION ALL SELECT {GROUP}, 1 FROM cw_new
        ) AS delta GROUP BY {GROUP} HAVING sum(d) <> 0;
        INSERT INTO certificate_expiry_counts ({EXPIRY_GROUP}, expiry_day, n)
        SELECT {EXPIRY_GROUP}, day, sum(d) FROM (
            SELECT {EXPIRY_GROUP}, (not_after AT TIME ZONE 'UTC')::date AS day, -1 AS d
            FROM cw_old WHERE status IN {LIVE}
            UNION ALL
            SELECT {EXPIRY_GROUP}, (not_after AT TIME ZONE 'UTC')::date, 1
            FROM cw_new WHERE status IN {LIVE}
        ) AS delta GROUP BY {EXPIRY_GROUP}, day HAVING sum(d) <> 0;""",
}
PG_TRANSITIONS = {
    "insert": "NEW TABLE AS cw_new",
    "delete": "OLD TABLE AS cw_old",
    "update": "OLD TABLE AS cw_old NEW TABLE AS cw_new",
}


def _sqlite_rows(row: str, sign: str) -> str:
    columns = ", ".join(f"{row}.{c.strip()}" for c in GROUP.split(","))
    expiry = ", ".join(f"{row}.{c.strip()}" for c in EXPIRY_GROUP.split(","))
    return f"""
        INSERT INTO certificate_counts ({GROUP}, n) VALUES ({columns}, {sign}1);
        INSERT INTO certificate_expiry_counts ({EXPIRY_GROUP}, expiry_day, n)
        SELECT {expiry}, date({row}.not_after), {sign}1 WHERE {row}.status IN {LIVE};"""


def upgrade():
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "certificate_counts",
        sa.Column("id", big, nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("cert_type", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("issuer_cn", sa.String(length=255), nullable=True),
        sa.Column("key_type", sa.String(length=32), nullable=True),
        sa.Column("signature_algorithm", sa.String(length=64), nullable=True),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_counts")),
    )
    op.create_index(
        op.f("ix_certificate_counts_organization_id"), "certificate_counts", ["organization_id"]
    )
    op.create_table(
        "certificate_expiry_counts",
        sa.Column("id", big, nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=True),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("cert_type", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("expiry_day", sa.Date(), nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_expiry_counts")),
    )
    op.create_index(
        op.f("ix_certificate_expiry_counts_expiry_day"),
        "certificate_expiry_counts",
        ["expiry_day"],
        postgresql_include=["organization_id", "department_id", "cert_type", "status", "n"],
    )
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        # Every fold deletes and rewrites the rows: vacuum after a few thousand dead rows,
        # not after a fifth of the table, so the dashboard's scans stay short.
        for table in ("certificate_counts", "certificate_expiry_counts"):
            op.execute(
                f"ALTER TABLE {table} SET (autovacuum_vacuum_scale_factor = 0, "
                "autovacuum_vacuum_threshold = 5000, autovacuum_analyze_scale_factor = 0, "
                "autovacuum_analyze_threshold = 5000)"
            )
        op.execute("LOCK TABLE certificates IN SHARE MODE")
        # TRUNCATE fires no DELETE trigger: it empties the summaries with the certificates.
        op.execute(
            "CREATE FUNCTION cw_certificate_counts_truncate() RETURNS trigger LANGUAGE plpgsql "
            "AS $$ BEGIN TRUNCATE certificate_counts, certificate_expiry_counts; "
            "RETURN NULL; END $$"
        )
        op.execute(
            "CREATE TRIGGER cw_certificate_counts_truncate AFTER TRUNCATE ON certificates "
            "FOR EACH STATEMENT EXECUTE FUNCTION cw_certificate_counts_truncate()"
        )  # no write between fill and triggers
        for operation, body in PG_FUNCTIONS.items():
            op.execute(
                f"CREATE FUNCTION cw_certificate_counts_{operation}() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN {body} RETURN NULL; END $$"
            )
            op.execute(
                f"CREATE TRIGGER cw_certificate_counts_{operation} AFTER {operation.upper()} "
                f"ON certificates REFERENCING {PG_TRANSITIONS[operation]} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION cw_certificate_counts_{operation}()"
            )
        day = "(not_after AT TIME ZONE 'UTC')::date"
    else:
        op.execute(
            "CREATE TRIGGER cw_certificate_counts_insert AFTER INSERT ON certificates "
            f"BEGIN {_sqlite_rows('NEW', '')} END"
        )
        op.execute(
            "CREATE TRIGGER cw_certificate_counts_delete AFTER DELETE ON certificates "
            f"BEGIN {_sqlite_rows('OLD', '-')} END"
        )
        op.execute(
            f"CREATE TRIGGER cw_certificate_counts_update AFTER UPDATE OF {GROUP}, not_after "
            f"ON certificates BEGIN {_sqlite_rows('OLD', '-')} {_sqlite_rows('NEW', '')} END"
        )
        day = "date(not_after)"
    op.execute(
        f"INSERT INTO certificate_counts ({GROUP}, n) "
        f"SELECT {GROUP}, count(*) FROM certificates GROUP BY {GROUP}"
    )
    op.execute(
        f"INSERT INTO certificate_expiry_counts ({EXPIRY_GROUP}, expiry_day, n) "
        f"SELECT {EXPIRY_GROUP}, {day}, count(*) FROM certificates WHERE status IN {LIVE} "
        f"GROUP BY {EXPIRY_GROUP}, {day}"
    )


def downgrade():
    dialect = op.get_bind().dialect.name
    for operation in (*PG_FUNCTIONS, "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS cw_certificate_counts_{operation} ON certificates"
                   if dialect == "postgresql"
                   else f"DROP TRIGGER IF EXISTS cw_certificate_counts_{operation}")
        if dialect == "postgresql":
            op.execute(f"DROP FUNCTION IF EXISTS cw_certificate_counts_{operation}()")
    op.drop_index(
        op.f("ix_certificate_expiry_counts_expiry_day"), table_name="certificate_expiry_counts"
    )
    op.drop_table("certificate_expiry_counts")
    op.drop_index(op.f("ix_certificate_counts_organization_id"), table_name="certificate_counts")
    op.drop_table("certificate_counts")
