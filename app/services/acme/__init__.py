"""ACME (RFC 8555) use cases: EAB keys, nonces, accounts, orders and challenge validation."""
