"""Certwright's pure X.509 core: keys, names, CSRs, profiles, issuance, lint, CRL, OCSP.

No I/O and no Flask, SQLAlchemy, app.models, app.services or app.extensions imports:
services pass data in and store what comes out. Times are timezone-aware UTC and
injectable (``now=``); serials are reserved by the caller (``issue.new_serial()``).
Every deliberate failure is a subclass of ``errors.PkiError`` with a message fit to show.

The API the services layer uses, by module:

keys       KeyType ("RSA-2048" | "RSA-3072" | "RSA-4096" | "EC-P256" | "EC-P384"),
           generate_private_key, parse_key_type, describe_public_key (any key ->
           "RSA-1024", "Ed25519", ...), check_key_policy(public_key, allowed) -> KeyType,
           private_key_to_der / private_key_to_pem / load_private_key.
names      normalize_dns_name (IDNA 2008 A-labels, wildcard only as "*.x.y"),
           normalize_ip_address, normalize_email, is_name_within_domain(name, domain,
           allow_wildcard=...), build_alt_names / parse_alt_names -> AltNames,
           build_subject(...) -> x509.Name in C, ST, L, O, OU, CN order, SubjectFields,
           common_name_host (is this CN a DNS name / IP that belongs in the SAN?).
csr        parse_csr(bytes) -> ParsedCsr (PEM, DER or bare base64, <= 32 KB, signature
           verified), build_csr(key, subject=..., alt_names=...).
profiles   CertKind (SSL, Client, CodeSigning, Device), LeafProfile / LEAF_PROFILES,
           ROOT_CA_PROFILE / ISSUING_CA_PROFILE, SignatureHash, default_ca_lifetime_years,
           max_tls_validity_days(at), check_term(kind, term_days, at).
issuer     make_issuer(ca_cert, ca_key, crl_url=, ocsp_url=, ca_issuers_url=) -> Issuer:
           everything derived from a CA (name, AKI/CDP/AIA pre-encoded, hash, OCSP CertID
           hashes), computed once; keep one per CA and reuse it for every signature.
issue      create_root_ca, create_issuing_ca, issue_leaf (policy + build + lint + sign),
           build_leaf (no policy), sign, sign_linted (lint-before-sign), new_serial,
           validity_window (inclusive notAfter, clamped to the CA), utc_now.
lint       lint_certificate, check_certificate (raises LintError), refused_findings,
           LINT_ALLOW_LIST (reviewed private-CA exceptions), warm_up.
crl        build_crl(issuer, revoked=[RevokedEntry...], crl_number=, next_update_in=),
           parse_reason, REASON_CODES / REASON_NAMES.
ocsp       respond(request_der, issuers, lookup, valid_for=, cached=) -> DER response,
           build_response (pre-produced, cacheable), parse_request, decode_get_path,
           find_issuer, malformed_response / unauthorized_response.
formats    render_download(cert, chain, DownloadFormat) -> Download(content, mime_type,
           extension), export_pkcs12, load_certificates, fingerprint_sha256.
keystore   seal / unseal / reseal (MultiFernet), seal_private_key / unseal_private_key,
           new_kek, parse_keks("k1,k2") -> KeyEncryptionKeys (repr hides keys).
info       describe_certificate(cert) -> CertificateInfo; never raises on a loaded cert.
errors     PkiError > CsrError, KeyPolicyError, NamePolicyError, ProfileError,
           LintError(findings), SealError, FormatError, OcspRequestError.
"""
