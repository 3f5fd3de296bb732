"""Certwright: the application factory lives here (no I/O at import time)."""
