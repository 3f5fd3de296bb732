"""PURE ACME (RFC 8555) protocol: JWS and JWK (jose), problem documents (problems),
request messages (messages) and challenge values (challenges). No Flask, no SQLAlchemy,
no I/O: bytes and dicts in, frozen dataclasses out, errors as AcmeProblem."""
