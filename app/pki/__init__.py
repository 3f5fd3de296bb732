"""Certwright's pure X.509 core: keys, names, CSRs, profiles, issuance, lint, revocation,
CRL, OCSP.

No I/O and no Flask, SQLAlchemy, app.models, app.services or app.extensions imports:
services pass data in and store what comes out. Times are timezone-aware UTC and
injectable (``now=``); serials are reserved by the caller (``issue.new_serial()``).
Every deliberate failure is a subclass of ``errors.PkiError`` with a message fit to show.

The API the services layer uses, by module:

keys       KeyType ("RSA-2048" | "RSA-3072" | "RSA-4096" | "EC-P256" | "EC-P384"),
           generate_private_key, parse_key_type, describe_public_key (any key ->
           "RSA-1024", "Ed25519", ...), check_key_policy(public_key, allowed,
           blocked_spki_sha256=) -> KeyType (refuses weak and blocked keys),
           private_key_to_der / private_key_to_pem / load_private_key.
weak_keys  has_roca_fingerprint(n), has_close_primes(n), weak_key_reason(key),
           spki_sha256(key) (the hex key hash blocklists use).
names      normalize_dns_name (IDNA 2008 A-labels, wildcard only as "*.x.y"),
           normalize_ip_address, normalize_email, is_name_within_domain(name, domain,
           allow_wildcard=...), build_alt_names / parse_alt_names -> AltNames,
           build_subject(...) -> x509.Name in C, ST, L, O, OU, CN order, SubjectFields,
           common_name_host (is this CN a DNS name / IP that belongs in the SAN?).
subject_text check_subject_text(value, label=) -> CheckedText(value NFC, warnings):
           organization / department names before they are saved; refused_character,
           describe_character ("U+202E RIGHT-TO-LEFT OVERRIDE"), scripts_of.
csr        parse_csr(bytes) -> ParsedCsr (PEM, DER or bare base64, <= 32 KB, signature
           verified), build_csr(key, subject=..., alt_names=...).
profiles   CertKind (SSL, Client, CodeSigning, Device), LeafProfile / LEAF_PROFILES,
           CaPurpose (TLS, SMIME, CodeSigning, Device), ROOT_CA_PROFILE /
           ISSUING_CA_PROFILES[purpose] (ISSUING_CA_PROFILE: TLS), ca_purpose_of(cert),
           check_issuer_purpose(purpose, kind), SignatureHash, signature_hash_for(key_type,
           preferred) (the signing key decides), check_signature_hash,
           default_ca_lifetime_years, max_tls_validity_days(at), check_term(kind, term, at).
issuer     make_issuer(ca_cert, ca_key, crl_url=, ocsp_url=, ca_issuers_url=) -> Issuer:
           everything derived from a CA (name, AKI/CDP/AIA pre-encoded, its own hash,
           purpose, OCSP CertID hashes), computed once; keep one per CA and reuse it.
issue      create_root_ca, create_issuing_ca(purpose=TLS), issue_leaf (policy + build +
           lint + sign), build_leaf (no policy), sign, sign_linted (lint-before-sign),
           new_serial, rehearsal_key; validity_window / utc_now (from validity).
validity   utc_now, to_utc, BACKDATE (notBefore one hour before signing), backdated,
           validity_window (backdated, inclusive notAfter, inside the issuer).
lint       lint_certificate, check_certificate (raises LintError), refused_findings,
           LINT_ALLOW_LIST (reviewed private-CA exceptions), warm_up; CA certificates
           by BR CA profile (root, TLS, non-TLS subordinate).
revocation Revoker, allowed_reasons(kind, revoker), check_revocation_reason (raises
           RevocationPolicyError), check_publishable_reason, parse_reason,
           REASON_CODES / REASON_NAMES / REASON_DESCRIPTIONS.
status_lint lint_crl / check_crl, lint_ocsp_response / check_ocsp_response,
           CRL_LINT_ALLOW_LIST / OCSP_LINT_ALLOW_LIST, warm_up.
crl        build_crl(issuer, revoked=[RevokedEntry(..., is_ca=)], crl_number=,
           next_update_in=, previous_this_update=, previous_crl_number=) (checked and
           linted), next_this_update; parse_reason, REASON_CODES / REASON_NAMES.
ocsp       respond(request_der, issuers, lookup, valid_for=, cached=) -> DER response,
           build_response (pre-produced, cacheable, linted; StatusLookup(is_ca=) for CA
           certificates), parse_request, decode_get_path, find_issuer,
           malformed_response / unauthorized_response.
formats    render_download(cert, chain, DownloadFormat) -> Download(content, mime_type,
           extension), export_pkcs12, load_certificates, fingerprint_sha256.
keystore   seal / unseal / reseal (MultiFernet), seal_private_key / unseal_private_key,
           new_kek, parse_keks("k1,k2") -> KeyEncryptionKeys (repr hides keys).
info       describe_certificate(cert) -> CertificateInfo; never raises on a loaded cert.
errors     PkiError > CsrError, KeyPolicyError, NamePolicyError, ProfileError >
           RevocationPolicyError, LintError(findings, document), SealError, FormatError,
           OcspRequestError.
"""
