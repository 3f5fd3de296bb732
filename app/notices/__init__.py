"""Pure notification helpers: when a notice is due (thresholds), how notices group into a
digest, how a webhook body and a mailed link are signed, how a notice reads (sandboxed
templates) and which recipient addresses are acceptable. No Flask, SQLAlchemy or I/O."""
