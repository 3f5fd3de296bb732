"""The operator/benchmark command line runs the worker path and reports a summary."""

from __future__ import annotations

import json

import pytest

from app.scan.__main__ import main
from tests.tlsbed.farm import Endpoints


def test_sweep_from_the_command_line(
    endpoints: Endpoints, capsys: pytest.CaptureFixture[str]
) -> None:
    ranges = f"{endpoints.rsa}-{endpoints.misordered}"
    code = main([ranges, "--ports", str(endpoints.port), "--results", "--shard-size", "4",
                 "--handshake-timeout", "0.5"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["targets"] == summary["done"] == 12
    assert summary["shards"] == 3
    assert summary["outcomes"]["tls"] == 8
    lines = [json.loads(line) for line in out.splitlines()]
    assert {line["ip"] for line in lines if line["error"] is None} >= {endpoints.rsa}


def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["10.0.0.300", "--ports", "0"]) == 2
    err = capsys.readouterr().err
    assert "line 1: '10.0.0.300' is not an IPv4/IPv6 address" in err
    assert "ports: '0' is outside 1-65535" in err
