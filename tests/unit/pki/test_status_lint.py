"""The CRL and OCSP-response linter: its allow-lists and its refusals."""

from __future__ import annotations

from app.pki import status_lint


def test_allow_lists_are_reviewed() -> None:
    assert status_lint.CRL_LINT_ALLOW_LIST == {}
    assert set(status_lint.OCSP_LINT_ALLOW_LIST) == {
        "certwright.ocsp_validity_interval_below_8_hours"
    }
    for reason in status_lint.OCSP_LINT_ALLOW_LIST.values():
        assert "BR 4.9.9" in reason


def test_undecodable_responses_are_a_fatal_finding() -> None:
    status_lint.warm_up()
    (finding,) = status_lint.lint_ocsp_response(b"\x30\x03\x02\x01\x01")
    assert (finding.code, finding.severity) == ("certwright.lint.decode_failed", "FATAL")
