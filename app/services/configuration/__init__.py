"""Configuration as code: export the whole configuration as YAML, plan what a file would
change, apply it in one audited transaction (document.py reads and checks a file, state.py
reads the database in the same shape, changes.py compares the two and makes the changes
through the domain services). Never a private key, a password or another secret."""
