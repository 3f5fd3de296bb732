"""Machine-facing front doors, a package per audience: relying_party/ (CRL, OCSP, CA
certificates) now; scm/ (SCM REST v1) and acme/ (RFC 8555) as they land."""
