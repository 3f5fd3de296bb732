"""What relying parties fetch without signing in: CRLs (CDP), the OCSP responder and CA
certificates (AIA). endpoints.py routes them; ocsp_wsgi.py answers OCSP in front of Flask."""
