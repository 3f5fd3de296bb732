"""The bare reference of the API benchmark: a Flask endpoint that only parses a CSR and signs
it (no authentication, database, audit or queue), served by gunicorn with 2 processes like
Certwright's web tier. The CA comes from BARE_CA_CERT / BARE_CA_KEY (PEM files).

    gunicorn -w 2 -k gthread --threads 8 --reuse-port -b 127.0.0.1:PORT bench.bare_sign:app
"""

from __future__ import annotations

import datetime as dt
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from flask import Flask, Response, request

app = Flask(__name__)
with open(os.environ["BARE_CA_CERT"], "rb") as fh:
    CA_CERT = x509.load_pem_x509_certificate(fh.read())
with open(os.environ["BARE_CA_KEY"], "rb") as fh:
    CA_KEY = serialization.load_pem_private_key(fh.read(), password=None)
AKI = x509.AuthorityKeyIdentifier.from_issuer_public_key(CA_KEY.public_key())  # type: ignore[arg-type]


@app.post("/sign")
def sign() -> Response:
    csr = x509.load_pem_x509_csr(request.get_json()["csr"].encode())
    names = csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    cn = str(names[0].value)
    now = dt.datetime.now(dt.UTC)
    key = csr.public_key()
    usage = x509.KeyUsage(
        digital_signature=True,
        key_encipherment=not isinstance(key, ec.EllipticCurvePublicKey),
        content_commitment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)]))
        .issuer_name(CA_CERT.subject)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn)]), critical=False)
        .add_extension(AKI, critical=False)
        .sign(CA_KEY, hashes.SHA256())  # type: ignore[arg-type]
    )
    return Response(
        cert.public_bytes(serialization.Encoding.PEM), mimetype="application/x-pem-file"
    )
