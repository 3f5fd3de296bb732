"""Fixtures shared by the integration tests that need them by name."""

from tests.integration.scm_live import live  # noqa: F401  (the live SCM REST API server)
