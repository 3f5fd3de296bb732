"""Hand-run throughput measurement of CSR -> certificate (not a test; pytest skips it).

    cd /work/wt-pki && /work/main/.venv/bin/python tests/unit/pki/measure_issuance.py

Prints certificates per second for, per CA key type: raw cryptography (load CSR, build,
sign), Certwright without lint (parse_csr with signature check, key and name policy,
issue_leaf(lint=False)) and with lint-before-sign (issue_leaf()).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki import csr, issue, keys, lint, names
from app.pki.issuer import Issuer, make_issuer
from app.pki.profiles import LEAF_PROFILES, CertKind

URL = "http://pki.certwright.test"


def best_rates(works: dict[str, Callable[[], object]], rounds: int = 7) -> dict[str, float]:
    """Best-of-``rounds`` rate per work item, rounds interleaved so that load on a shared
    machine hits every item alike (like timeit, the best run is the least disturbed)."""
    best = dict.fromkeys(works, 0.0)
    for work in works.values():
        work()
    for _ in range(rounds):
        for label, work in works.items():
            count, start = 0, time.perf_counter()
            while time.perf_counter() - start < 0.4:
                work()
                count += 1
            best[label] = max(best[label], count / (time.perf_counter() - start))
    for label, per_second in best.items():
        print(f"  {label:<38} {per_second:8.0f}/s  {1000 / per_second:6.3f} ms")
    return best


def hierarchy(key_type: keys.KeyType) -> Issuer:
    root_key, ca_key = keys.generate_private_key(key_type), keys.generate_private_key(key_type)
    root = make_issuer(issue.create_root_ca(root_key, customer_name="Bench"), root_key)
    ca_cert = issue.create_issuing_ca(ca_key.public_key(), root, customer_name="Bench")
    return make_issuer(
        ca_cert,
        ca_key,
        crl_url=f"{URL}/ca.crl",
        ocsp_url=f"{URL}/ocsp",
        ca_issuers_url=f"{URL}/ca.crt",
    )


def main() -> None:
    leaf_key = keys.generate_private_key("RSA-2048")
    pem = csr.build_csr(
        leaf_key,
        subject=names.build_subject(common_name="bench.certwright.test"),
        alt_names=names.build_alt_names(dns_names=["bench.certwright.test"]),
    ).public_bytes(Encoding.PEM)
    lint.warm_up()
    for key_type in ("RSA-2048", "EC-P256"):
        issuer = hierarchy(key_type)
        print(f"{key_type} issuing CA, RSA-2048 CSR:")

        def raw(issuer: Issuer = issuer) -> x509.Certificate:
            request = x509.load_pem_x509_csr(pem)
            now = dt.datetime.now(dt.UTC)
            builder = (
                x509.CertificateBuilder()
                .subject_name(request.subject)
                .issuer_name(issuer.name)
                .public_key(request.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=90))
            )
            for extension in request.extensions:
                builder = builder.add_extension(extension.value, extension.critical)
            return builder.sign(issuer.private_key, hashes.SHA256())

        def pipeline(issuer: Issuer = issuer, with_lint: bool = False) -> x509.Certificate:
            parsed = csr.parse_csr(pem)
            return issue.issue_leaf(
                issuer,
                public_key=parsed.public_key,
                subject=parsed.subject.to_name(),
                alt_names=names.build_alt_names(
                    dns_names=parsed.dns_names, ip_addresses=parsed.ip_addresses
                ),
                profile=LEAF_PROFILES[CertKind.SSL],
                serial=issue.new_serial(),
                term_days=90,
                lint=with_lint,
            )

        rates = best_rates(
            {
                "raw cryptography build+sign": raw,
                "Certwright build+sign (no lint)": pipeline,
                "Certwright build+sign+lint": lambda: pipeline(with_lint=True),
            }
        )
        raw_rate = rates["raw cryptography build+sign"]
        ours = rates["Certwright build+sign (no lint)"] / raw_rate
        linted = rates["Certwright build+sign+lint"] / raw_rate
        print(f"  pipeline/raw {ours:.0%}   with lint/raw {linted:.0%}")
    sample = issue.sign(
        issue.build_leaf(
            issuer,
            public_key=leaf_key.public_key(),
            subject=names.build_subject(common_name="bench.certwright.test"),
            alt_names=names.AltNames(),
            profile=LEAF_PROFILES[CertKind.SSL],
            serial=1,
            term_days=90,
        ),
        issuer,
    )
    best_rates(
        {
            "pkilint serverauth lint of one cert": lambda: lint.lint_certificate(
                sample, CertKind.SSL
            ),
            "pkilint RFC 5280 lint of one cert": lambda: lint.lint_certificate(sample, None),
        }
    )


if __name__ == "__main__":
    main()
