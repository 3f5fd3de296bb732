"""schemathesis against the live API (gunicorn): every operation of the OpenAPI document,
first as an RAO's API account, then as an MRAO's. No 5xx, and every answer (status, content
type, headers, body) fits the document. CW_TEST_SCHEMATHESIS_EXAMPLES sets the examples per
operation (default 12); the run is derandomized, so a failure reproduces."""

from __future__ import annotations

import os

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("CW_TEST_SCHEMATHESIS_EXAMPLES", "12"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def fuzz(live, login: str) -> list[str]:
    # A fresh web process answers its first call only once the application is loaded,
    # which on a busy machine outlasts schemathesis's 10-second loader timeout.
    requests.get(f"{live.base}/api/openapi.json", timeout=120).raise_for_status()
    schema = schemathesis.openapi.from_url(f"{live.base}/api/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case):
            case.call_and_validate(
                base_url=f"{live.base}/api", headers=live.headers(login), checks=CHECKS
            )

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {exc}")
    assert operations >= 30
    return failures


@pytest.mark.slow
def test_every_operation_as_an_rao_then_as_an_mrao(live):
    failures = fuzz(live, "api-acme") + fuzz(live, "api-mrao")
    assert not failures, "\n\n".join(failures)
