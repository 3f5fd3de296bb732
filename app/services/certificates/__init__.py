"""The one inventory and the life of a certificate: requests (enrollment), approvals,
issuance and its notices, renewal and replacement, revocation."""
