"""The private CA: authorities (create, retire, KEK rotation), signing (unseal, serials,
chains), CRLs, the OCSP responder and certificate profiles."""
