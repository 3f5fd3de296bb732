"""ACME (RFC 8555) for machines: a directory per ACME-enabled certificate profile."""
