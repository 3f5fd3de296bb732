"""Import of certificates (issue 16): imports, their uploads, per-file results, the
"imported" source of a certificate, findings per certificate, and the issuer link.

Schema:
* certificate_imports, import_uploads, import_results, imported_certificates;
* certificate_findings: parse findings of odd certificates and key findings, by code;
* certificates.issuer_id: the certificate in the inventory that signed this one;
* certificates.spki_sha256: the key's identity (filled here for the certificates stored);
* an index on certificates.serial_hex (certificates reusing an issuer and serial).

The downgrade drops them; nothing else changes.

Revision ID: 0016_import
Revises: 0014_api
Create Date: 2026-12-06 23:00:00

"""
import hashlib

from alembic import op
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


# revision identifiers, used by Alembic.
revision = "0016_import"
down_revision = "0014_api"
branch_labels = None
depends_on = None


def _utc():
    return sa.DateTime(timezone=True)


def upgrade():
    op.create_table(
        "certificate_imports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("organization_id", sa.Integer(), nullable=False),
        sa.Column("department_id", sa.Integer(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("files", sa.JSON(), nullable=False),
        sa.Column("total_bytes", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["admins.id"],
            name=op.f("fk_certificate_imports_created_by_id_admins"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["departments.id"],
            name=op.f("fk_certificate_imports_department_id_departments"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_certificate_imports_job_id_jobs")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"], ["organizations.id"],
            name=op.f("fk_certificate_imports_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_imports")),
    )
    op.create_index(
        op.f("ix_certificate_imports_department_id"), "certificate_imports", ["department_id"]
    )
    op.create_index(
        op.f("ix_certificate_imports_organization_id"), "certificate_imports", ["organization_id"]
    )
    op.create_table(
        "import_uploads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"], ["certificate_imports.id"],
            name=op.f("fk_import_uploads_import_id_certificate_imports"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_uploads")),
        sa.UniqueConstraint("import_id", "seq", name=op.f("uq_import_uploads_import_id")),
    )
    op.create_table(
        "import_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("member", sa.String(length=255), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["certificate_id"], ["certificates.id"],
            name=op.f("fk_import_results_certificate_id_certificates"), ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["certificate_imports.id"],
            name=op.f("fk_import_results_import_id_certificate_imports"), ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_import_results")),
        sa.UniqueConstraint("import_id", "seq", name=op.f("uq_import_results_import_id")),
    )
    op.create_table(
        "imported_certificates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("import_id", sa.Integer(), nullable=False),
        sa.Column("file", sa.String(length=255), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"], ["certificates.id"],
            name=op.f("fk_imported_certificates_certificate_id_certificates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["import_id"], ["certificate_imports.id"],
            name=op.f("fk_imported_certificates_import_id_certificate_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imported_certificates")),
        sa.UniqueConstraint(
            "certificate_id", "import_id", name=op.f("uq_imported_certificates_certificate_id")
        ),
    )
    op.create_index(
        op.f("ix_imported_certificates_import_id"), "imported_certificates", ["import_id"]
    )
    op.create_table(
        "certificate_findings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"], ["certificates.id"],
            name=op.f("fk_certificate_findings_certificate_id_certificates"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_findings")),
        sa.UniqueConstraint(
            "certificate_id", "code", name=op.f("uq_certificate_findings_certificate_id")
        ),
    )
    op.create_index(op.f("ix_certificate_findings_code"), "certificate_findings", ["code"])
    # Plain ADD COLUMN, not a batch table copy (certificates is referenced by other tables;
    # see 0010), and so no foreign key (app/models/certificates.py says why).
    op.add_column("certificates", sa.Column("issuer_id", sa.Integer(), nullable=True))
    op.create_index(op.f("ix_certificates_issuer_id"), "certificates", ["issuer_id"])
    op.add_column(
        "certificates",
        sa.Column("spki_sha256", sa.String(length=64), nullable=False, server_default=""),
    )
    op.create_index(op.f("ix_certificates_spki_sha256"), "certificates", ["spki_sha256"])
    # Certificates sharing an issuer and serial are found by serial (a finding).
    op.create_index(op.f("ix_certificates_serial_hex"), "certificates", ["serial_hex"])
    _fill_spki()


def _fill_spki():
    """Every stored certificate's key identity (a frozen copy of app.pki.weak_keys.spki_sha256),
    in chunks of 1,000; a certificate whose key cannot be read keeps ""."""
    conn = op.get_bind()
    certificates = sa.table(
        "certificates",
        sa.column("id", sa.Integer),
        sa.column("der", sa.LargeBinary),
        sa.column("spki_sha256", sa.String),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(certificates.c.id, certificates.c.der)
            .where(certificates.c.id > last)
            .order_by(certificates.c.id)
            .limit(1000)
        ).all()
        if not rows:
            return
        for row in rows:
            try:
                key = x509.load_der_x509_certificate(bytes(row.der)).public_key()
                spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            except Exception:  # an odd certificate: left for the sweep to judge
                continue
            conn.execute(
                certificates.update()
                .where(certificates.c.id == row.id)
                .values(spki_sha256=hashlib.sha256(spki).hexdigest())
            )
        last = rows[-1].id


def downgrade():
    op.drop_index(op.f("ix_certificates_serial_hex"), table_name="certificates")
    op.drop_index(op.f("ix_certificates_spki_sha256"), table_name="certificates")
    op.execute(sa.text("ALTER TABLE certificates DROP COLUMN spki_sha256"))
    op.drop_index(op.f("ix_certificates_issuer_id"), table_name="certificates")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too), not a batch table copy: see upgrade().
    op.execute(sa.text("ALTER TABLE certificates DROP COLUMN issuer_id"))
    op.drop_index(op.f("ix_certificate_findings_code"), table_name="certificate_findings")
    op.drop_table("certificate_findings")
    op.drop_index(op.f("ix_imported_certificates_import_id"), table_name="imported_certificates")
    op.drop_table("imported_certificates")
    op.drop_table("import_results")
    op.drop_table("import_uploads")
    op.drop_index(
        op.f("ix_certificate_imports_organization_id"), table_name="certificate_imports"
    )
    op.drop_index(op.f("ix_certificate_imports_department_id"), table_name="certificate_imports")
    op.drop_table("certificate_imports")

