"""Trust what we issue (issue 9, A): revoked issuing CAs, the blocklist of compromised keys,
and the data the new PKI rules need.

Schema:
* certificate_authorities.revoked_at / revocation_reason: an issuing CA revoked by its
  parent (listed on the parent's CRL, answered by the parent's OCSP responder);
* blocked_keys: SPKI SHA-256 of keys never certified again (CA/B Forum BR 6.1.1.3(4)),
  filled here from the certificates already revoked for keyCompromise.

Data:
* signature hashes (BR 7.1.3.2.2): an EC-P256 CA signs with SHA-256 and an EC-P384 CA with
  SHA-384 from now on, whatever was stored (an issuing CA used to inherit its parent's);
  RSA CAs keep their choice. Certificates already signed are not touched.
* revocation reasons (BR 7.2.2): certificateHold becomes unspecified (Certwright never
  releases a hold: the revocation was final), cACompromise and aACompromise on end-entity
  certificates become keyCompromise. Without this, the CAs holding such rows could not
  publish a CRL that passes the lint.
* organization and department names are normalised to NFC when that changes nothing else
  (no clash with another name). Names holding characters the subject-text rules refuse
  (control and bidirectional-control characters ...) are NOT changed: they are listed in
  the migration log, and `flask --app wsgi org check-names` lists them until they are
  renamed; a certificate for them is refused at issuance.

The downgrade drops the new table and columns; the data changes are kept (they are what
the old code did anyway, or stricter).

Revision ID: 0010_trust_services
Revises: 0009_outbox_department
Create Date: 2026-11-29 10:00:00

"""
import hashlib
import logging
import unicodedata
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


# revision identifiers, used by Alembic.
revision = "0010_trust_services"
down_revision = "0009_outbox_department"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

# Frozen copies of the rules this migration applies (app.pki.profiles, app.pki.revocation,
# app.pki.subject_text at the time of writing).
_CURVE_HASHES = {"EC-P256": "SHA-256", "EC-P384": "SHA-384"}
_LEAF_REASONS = {
    "certificateHold": "unspecified",
    "cACompromise": "keyCompromise",
    "aACompromise": "keyCompromise",
}
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _refused(text):
    """The first character the subject-text rules refuse, described, or None."""
    for index, char in enumerate(text):
        category = unicodedata.category(char)
        if char in _BIDI:
            kind = "bidirectional control character"
        elif category == "Cc":
            kind = "control character"
        elif category == "Cf" and char not in "\u200c\u200d":
            kind = "invisible format character"
        elif category in ("Zl", "Zp", "Cs", "Co", "Cn"):
            kind = "character"
        else:
            continue
        return f"{kind} U+{ord(char):04X} at position {index + 1}"
    return None


def upgrade():
    # Plain ADD COLUMN (no batch table copy): on SQLite a copy of certificate_authorities
    # fails while certificates and profiles refer to it (foreign keys are on). The server
    # default stays: it is what the model's default writes anyway.
    op.add_column(
        "certificate_authorities",
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "certificate_authorities",
        sa.Column("revocation_reason", sa.String(length=32), nullable=False, server_default=""),
    )

    blocked = op.create_table(
        "blocked_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("spki_sha256", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocked_keys")),
        sa.UniqueConstraint("spki_sha256", name=op.f("uq_blocked_keys_spki_sha256")),
    )

    conn = op.get_bind()
    for key_type, hash_name in _CURVE_HASHES.items():
        changed = conn.execute(
            sa.text(
                "UPDATE certificate_authorities SET signature_hash = :hash "
                "WHERE key_type = :key_type AND signature_hash <> :hash"
            ),
            {"hash": hash_name, "key_type": key_type},
        ).rowcount
        if changed:
            log.warning("%d %s CAs now sign with %s (BR 7.1.3.2.2)", changed, key_type, hash_name)

    for old, new in _LEAF_REASONS.items():
        changed = conn.execute(
            sa.text(
                "UPDATE certificates SET revocation_reason = :new WHERE revocation_reason = :old"
            ),
            {"old": old, "new": new},
        ).rowcount
        if changed:
            log.warning("%d revocations with reason %s now read %s (BR 7.2.2)", changed, old, new)

    rows = conn.execute(
        sa.text(
            "SELECT id, der FROM certificates WHERE revocation_reason = 'keyCompromise'"
        )
    ).all()
    seen = set()
    entries = []
    now = datetime.now(timezone.utc)
    for row in rows:
        try:
            key = x509.load_der_x509_certificate(bytes(row.der)).public_key()
        except ValueError:
            continue
        digest = hashlib.sha256(
            key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        ).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        entries.append(
            {
                "spki_sha256": digest,
                "reason": "keyCompromise",
                "source": f"certificate #{row.id} revoked for keyCompromise",
                "added_at": now,
            }
        )
    if entries:
        op.bulk_insert(blocked, entries)

    for table, scope in (("organizations", None), ("departments", "organization_id")):
        columns = "id, name" + (f", {scope}" if scope else "")
        for row in conn.execute(sa.text(f"SELECT {columns} FROM {table}")).all():
            what = f"{table[:-1]} #{row.id} {row.name!r}"
            problem = _refused(row.name)
            if problem is not None:
                log.warning("%s contains a %s: rename it (it cannot be certified)", what, problem)
                continue
            normal = unicodedata.normalize("NFC", row.name)
            if normal == row.name:
                continue
            clash = sa.text(f"SELECT id FROM {table} WHERE name = :name AND id <> :id")
            params = {"name": normal, "id": row.id}
            if scope:
                clash = sa.text(
                    f"SELECT id FROM {table} WHERE name = :name AND id <> :id AND {scope} = :owner"
                )
                params["owner"] = getattr(row, scope)
            if conn.execute(clash, params).first():
                log.warning("%s: its NFC form is another's name; left as it is", what)
                continue
            conn.execute(
                sa.text(f"UPDATE {table} SET name = :name WHERE id = :id"),
                {"name": normal, "id": row.id},
            )
            log.warning("%s normalised to NFC", what)


def downgrade():
    op.drop_table("blocked_keys")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+ too), not a batch table copy: see upgrade().
    for column in ("revocation_reason", "revoked_at"):
        op.execute(sa.text(f"ALTER TABLE certificate_authorities DROP COLUMN {column}"))
