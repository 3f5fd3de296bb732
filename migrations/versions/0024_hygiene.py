"""Key hygiene over the whole inventory (issue 16 §3, §4): longer finding codes (pkilint's),
certificates.hygiene_version
(which version of the checks last looked at a certificate; 0: never, so the sweep checks
every certificate stored before), and the Debian weak keys table (openssl-blacklist
fingerprints) with certificates.debian_fingerprint to find the certificates a list names.

Revision ID: 0024_hygiene
Revises: 0021_reports
Create Date: 2026-12-07 02:30:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "0024_hygiene"
down_revision = "0021_reports"
branch_labels = None
depends_on = None


def upgrade():
    # pkilint's finding codes (cabf.serverauth.subscriber....) run past 64 characters.
    with op.batch_alter_table("certificate_findings") as batch:
        batch.alter_column(
            "code", existing_type=sa.String(length=64), type_=sa.String(length=128)
        )
    op.create_table(
        "debian_weak_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_debian_weak_keys")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_debian_weak_keys_fingerprint")),
    )
    # Plain ADD COLUMN (certificates is referenced by other tables; see 0010).
    op.add_column(
        "certificates",
        sa.Column("hygiene_version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.create_index(op.f("ix_certificates_hygiene_version"), "certificates", ["hygiene_version"])
    op.add_column(
        "certificates",
        sa.Column("debian_fingerprint", sa.String(length=20), nullable=False, server_default=""),
    )
    op.create_index(
        op.f("ix_certificates_debian_fingerprint"), "certificates", ["debian_fingerprint"]
    )


def downgrade():
    op.drop_index(op.f("ix_certificates_debian_fingerprint"), table_name="certificates")
    op.execute(sa.text("ALTER TABLE certificates DROP COLUMN debian_fingerprint"))
    op.drop_index(op.f("ix_certificates_hygiene_version"), table_name="certificates")
    op.execute(sa.text("ALTER TABLE certificates DROP COLUMN hygiene_version"))
    op.drop_table("debian_weak_keys")
    with op.batch_alter_table("certificate_findings") as batch:
        batch.alter_column(
            "code", existing_type=sa.String(length=128), type_=sa.String(length=64)
        )
