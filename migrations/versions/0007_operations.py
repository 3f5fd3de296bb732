"""Operations (issue 9, C5 and C6): durable mail; one vocabulary for key and signature
algorithms.

Mail: queued outbox rows become durable work: `next_attempt_at` (not before: the backoff
after a failure, or the lease of an attempt under way) and `dispatched_at` (when a delivery
message was last sent). Rows queued before this revision are due at once, so the scheduler
delivers them even though the messages that named them are gone.

Algorithms: certificates get `key_type` ("EC-P256", the name profiles and requests use),
and every row's key family, size, type and signature algorithm are worked out again from its
DER by app.pki.algorithms, so that issued ("SHA-256 with ECDSA") and discovered
("ecdsa-with-SHA256") certificates say "ECDSA-SHA256" alike; a row whose DER does not parse
keeps its family and size and has its signature name translated. Assignment rules' key type
conditions are rewritten the same way ("ECDSA-256" -> "EC-P256", "ECDSA" -> "EC").
Downgrade puts the old names back (issued rows "SHA-256 with ECDSA", the others OpenSSL's).

Revision ID: 0007_operations
Revises: 0006_trust
Create Date: 2026-12-06 19:50:00

"""
import re

from alembic import op
import sqlalchemy as sa
from cryptography import x509

from app.pki import algorithms


# revision identifiers, used by Alembic.
revision = "0007_operations"
down_revision = "0006_trust"
branch_labels = None
depends_on = None


BATCH = 1_000

certificates = sa.table(
    "certificates",
    sa.column("id", sa.Integer),
    sa.column("der", sa.LargeBinary),
    sa.column("origin", sa.String),
    sa.column("key_algorithm", sa.String),
    sa.column("key_size", sa.Integer),
    sa.column("key_type", sa.String),
    sa.column("signature_algorithm", sa.String),
)
rules = sa.table("assignment_rules", sa.column("id", sa.Integer), sa.column("conditions", sa.JSON))


def _described(der, family, size, signature):
    try:
        cert = x509.load_der_x509_certificate(der)
        key = cert.public_key()
        return (
            algorithms.key_family(key),
            algorithms.key_bits(key),
            algorithms.key_type(key),
            algorithms.signature_name(cert),
        )
    except Exception:  # unparseable DER or key: translate what was stored
        family = {"ECDSA": "EC"}.get(family or "", family or "")
        key_type = algorithms.key_type_of(family, size) if family else ""
        return family, size, key_type, algorithms.canonical_signature(signature or "") or signature


def _rewrite_certificates(describe):
    bind = op.get_bind()
    last = 0
    while True:
        rows = bind.execute(
            sa.select(
                certificates.c.id,
                certificates.c.der,
                certificates.c.origin,
                certificates.c.key_algorithm,
                certificates.c.key_size,
                certificates.c.signature_algorithm,
            )
            .where(certificates.c.id > last)
            .order_by(certificates.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        changes = [describe(row) for row in rows]
        bind.execute(
            certificates.update()
            .where(certificates.c.id == sa.bindparam("row_id"))
            .values(
                key_algorithm=sa.bindparam("family"),
                key_size=sa.bindparam("size"),
                key_type=sa.bindparam("name"),
                signature_algorithm=sa.bindparam("signature"),
            ),
            changes,
        )


def _rewrite_rules(rewrite):
    bind = op.get_bind()
    for row in bind.execute(sa.select(rules.c.id, rules.c.conditions)).all():
        conditions = [dict(c) for c in row.conditions or []]
        changed = False
        for condition in conditions:
            if condition.get("field") == "key_type" and condition.get("value"):
                new = rewrite(str(condition["value"]), str(condition.get("operator")))
                changed = changed or new != condition["value"]
                condition["value"] = new
        if changed:
            bind.execute(rules.update().where(rules.c.id == row.id).values(conditions=conditions))


def _key_type_now(value, operator):
    if operator == "equals":
        return algorithms.canonical_key_type(value) or value
    return re.sub(r"(?i)ecdsa", "EC", re.sub(r"(?i)ecdsa-(p-?)?", "EC-P", value))


def _key_type_before(value, operator):
    if value.upper() == "EC":
        return "ECDSA"
    return re.sub(r"(?i)\bEC-P(\d)", r"ECDSA-\1", value)


_OPENSSL = {
    "MD5-RSA": "md5WithRSAEncryption",
    "SHA1-RSA": "sha1WithRSAEncryption",
    "SHA224-RSA": "sha224WithRSAEncryption",
    "SHA256-RSA": "sha256WithRSAEncryption",
    "SHA384-RSA": "sha384WithRSAEncryption",
    "SHA512-RSA": "sha512WithRSAEncryption",
    "ECDSA-SHA1": "ecdsa-with-SHA1",
    "ECDSA-SHA224": "ecdsa-with-SHA224",
    "ECDSA-SHA256": "ecdsa-with-SHA256",
    "ECDSA-SHA384": "ecdsa-with-SHA384",
    "ECDSA-SHA512": "ecdsa-with-SHA512",
    "DSA-SHA1": "dsa_with_SHA1",
    "DSA-SHA256": "dsa_with_SHA256",
    "Ed25519": "ED25519",
    "Ed448": "ED448",
}


def _signature_before(origin, signature):
    if origin == "Issued":
        match = re.fullmatch(r"ECDSA-SHA(\d+)|SHA(\d+)-RSA", signature or "")
        if match:
            bits = match[1] or match[2]
            return f"SHA-{bits} with {'ECDSA' if match[1] else 'RSA'}"
        return signature
    if (signature or "").endswith("-RSAPSS") or signature == "RSAPSS":
        return "rsassaPss"
    return _OPENSSL.get(signature, signature)


def upgrade():
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_outbox_messages_next_attempt_at"), ["next_attempt_at"], unique=False
        )
    outbox = sa.table(
        "outbox_messages",
        sa.column("status", sa.String),
        sa.column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        outbox.update()
        .where(outbox.c.status == "queued")
        .values(next_attempt_at=outbox.c.created_at)
    )

    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("key_type", sa.String(length=32), nullable=False, server_default="")
        )
    _rewrite_certificates(
        lambda row: dict(
            zip(
                ("family", "size", "name", "signature"),
                _described(row.der, row.key_algorithm, row.key_size, row.signature_algorithm),
            ),
            row_id=row.id,
        )
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.alter_column("key_type", server_default=None)
    _rewrite_rules(_key_type_now)


def downgrade():
    _rewrite_rules(_key_type_before)
    _rewrite_certificates(
        lambda row: {
            "row_id": row.id,
            "family": row.key_algorithm,
            "size": row.key_size,
            "name": "",
            "signature": _signature_before(row.origin, row.signature_algorithm),
        }
    )
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_column("key_type")

    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_messages_next_attempt_at"))
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("next_attempt_at")
