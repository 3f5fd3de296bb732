"""Machine-facing front doors: CRL/OCSP/CA certificates, collection links, REST API, ACME."""
