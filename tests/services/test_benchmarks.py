"""The benchmarks keep working: each runs end to end in its smallest form.

These tests judge no speed (the figures of a tiny run on a shared machine mean nothing;
docs/benchmarks.md has the real ones). They check that every part of a benchmark runs and
that what it times really happened: every request issued, stored, audited and mailed, a
sample verified against its CA, every OCSP answer a signed response.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.processes import PY, ROOT
from tests.services.conftest import IN_CI, POSTGRES, need


def _tool(name: str) -> None:
    if shutil.which(name) is None:
        message = f"the benchmark needs `{name}` on PATH (`make tools` installs it)"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)


def run_smoke(module: str, tools: tuple[str, ...], status: dict[str, str], tmp_path: Path):
    """`python -m MODULE --smoke --json FILE` against the test PostgreSQL: its printout and
    its figures, after it exited 0."""
    need(status, "PostgreSQL", POSTGRES)
    for tool in tools:
        _tool(tool)
    out = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CW_", "DATABASE_URL"))}
    env["BENCH_POSTGRES_URL"] = POSTGRES
    done = subprocess.run(
        [PY, "-m", module, "--smoke", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(out.read_text())


def test_issuance_benchmark_runs_every_part(service_status: dict[str, str], tmp_path: Path):
    stdout, figures = run_smoke("bench.issuance", ("wrk", "redis-server"), service_status, tmp_path)
    runs = figures["postgres"]["runs"] + figures["sqlite"]["runs"]
    assert [(r["key_type"], r["lint"]) for r in figures["postgres"]["runs"]] == [
        ("RSA-2048", "sample"),
        ("RSA-2048", "every"),
        ("EC-P256", "sample"),
        ("EC-P256", "every"),
    ]
    for run in runs:
        assert run["complete"], run
        assert run["issued"] == run["certificates"] == run["n"] > 0, run
        assert run["audit_events"] >= 1 and run["mails"] >= 1, run
        assert run["verified_sample"] > 0 and not run["job_problems"], run
        assert run["rate"] > 0 and run["raw"], run
    ocsp = figures["ocsp"]
    assert ocsp["rate"] > 0 and ocsp["bad"] == 0 and ocsp["errors"] == 0, ocsp
    for line in ("(a) raw RSA-2048", "(a) raw EC-P256 + pkilint", "(c) OCSP responses"):
        assert line in stdout, stdout
    assert stdout.count("PASS") + stdout.count("FAIL") == 5, stdout


def test_discovery_benchmark_runs_every_part(service_status: dict[str, str], tmp_path: Path):
    stdout, figures = run_smoke(
        "bench.discovery", ("nmap", "redis-server"), service_status, tmp_path
    )
    [entry] = figures["rounds"]
    # The full path found every bed endpoint, stored each certificate once and assigned by
    # rule exactly the expected ones; the run's counters agree with what is stored.
    assert entry["tls"], entry
    for run in entry["tls"]:
        assert run["verified"]["ok"], run["verified"]
        assert run["verified"]["stored_endpoints"] == 64 + 8
    refs = entry["tls_references"]
    assert refs["bare"] and all(r["complete"] for r in refs["bare"]), refs["bare"]
    assert refs["nmap ssl-cert"] and all(r["complete"] for r in refs["nmap ssl-cert"])
    # The empty /16, with two worker processes and with one: every address refused, nothing
    # stored; nmap -sT over the same range as the reference.
    assert sorted(entry["sweep"]) == ["1", "2"]
    for group in entry["sweep"].values():
        assert group["runs"] and all(r["verified"]["ok"] for r in group["runs"]), group
        assert all(group["references"].values()), group["references"]
    assert stdout.count("PASS") + stdout.count("FAIL") >= 4, stdout


def test_silent_discovery_benchmark_runs_every_part(tmp_path: Path):
    """bench/discovery_silent.py: network namespaces (root), a /22 whose every SYN is
    dropped, scanned free and under a rate cap: every target times out, none answers."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        message = "the silent-network benchmark needs root and iproute2 (ip netns)"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [PY, "-m", "bench.discovery_silent", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert [run["outcomes"] for run in figures["runs"]] == [{"timeout": 1024}] * 2
    assert all(run["done"] == run["targets"] == 1024 for run in figures["runs"])
    assert done.stdout.count("PASS") + done.stdout.count("FAIL") == 2, done.stdout


def test_api_benchmark_runs_every_part(service_status: dict[str, str], tmp_path: Path):
    stdout, figures = run_smoke("bench.api", ("cfssl", "redis-server"), service_status, tmp_path)
    assert sorted(figures["runs"]) == ["EC-P256", "RSA-2048"]
    for key_type, runs in figures["runs"].items():
        assert sorted(runs) == ["bare_flask", "certwright", "cfssl"], key_type
        for system, run in runs.items():
            # every certificate came back, and a sample verifies against its issuer
            assert run["count"] == figures["count"] and run["failures"] == 0, (system, run)
            assert run["verified"] > 0 and run["per_second"] > 0 and run["p99_ms"] > 0, run
            # the system's processes were found (cfssl signs the smoke's 20 certificates in a
            # few milliseconds: under the clock tick, its CPU time may read 0)
            assert run["cpu_ms_total"] > 0 or (system == "cfssl" and run["cpu_ms_total"] == 0), (
                system,
                run,
            )
        # Certwright's share is charged to its web, worker and PostgreSQL processes (an
        # auto-approved enroll is issued by the web process: the workers only poll, and in
        # a short run that may stay under the clock tick)
        ours = runs["certwright"]
        assert min(ours["cpu_ms_web"], ours["cpu_ms_postgres"]) > 0, ours
        assert ours["cpu_ms_workers"] >= 0, ours
    assert set(figures["targets"]) == {
        "rsa_vs_cfssl",
        "rsa_target",
        "p256_vs_bare_flask",
        "p256_target",
    }
    assert stdout.count("PASS") + stdout.count("FAIL") == 2, stdout


def test_portal_benchmark_runs_every_part(service_status: dict[str, str], tmp_path: Path):
    stdout, figures = run_smoke("bench.portal", ("redis-server",), service_status, tmp_path)
    assert [(r["key_type"], r["lint"]) for r in figures["runs"]] == [
        ("EC-P256", "sample"),
        ("RSA-2048", "sample"),
        ("EC-P256", "every"),
        ("RSA-2048", "every"),
    ]
    for run in figures["runs"]:
        # Every registration went through and its PKCS#12 was downloaded once.
        assert run["registrations"] == figures["n"] > 0, run
        assert run["rate"] > 0 and run["raw_before"] > 0 and run["raw_after"] > 0, run
        assert run["idle_requests"] > 0 and run["load_requests"] > 0, run
        # Job runs packaged them (batches: at most one run per registration).
        assert 0 < run["job_runs"] <= run["registrations"], run
    assert stdout.count("PASS") + stdout.count("FAIL") == 8, stdout


def test_import_benchmark_runs_every_part(service_status: dict[str, str], tmp_path: Path):
    stdout, figures = run_smoke("bench.import", (), service_status, tmp_path)
    assert figures["count"] == 200
    # What (c) timed really happened: the run asserts every certificate stored and one
    # result row each before it reports a figure.
    for key in ("raw_per_s", "bulk_insert_per_s", "end_to_end_per_s"):
        assert figures[key] > 0, key
    assert "end_to_end >= 0.35 x raw" in stdout


def test_notification_sweep_benchmark_runs_every_part(
    service_status: dict[str, str], tmp_path: Path
):
    stdout, figures = run_smoke("bench.notifications", ("redis-server",), service_status, tmp_path)
    assert figures["certificates"] == 5_000 and figures["rules"] == 20
    # The sweep (with one and with two worker processes) wrote exactly the deliveries the
    # hand-written statement computes, row for row; the second sweep the same day nothing.
    assert figures["deliveries"] > 0
    assert figures["same_as_reference"] == {"only_sweep": 0, "only_reference": 0}
    for run in ("sweep_1_worker", "sweep_2_workers"):
        assert figures[run]["created"] == figures["deliveries"], figures[run]
        assert figures[run]["ranges"] >= 1 and figures[run]["seconds"] > 0
    assert figures["second_sweep"]["created"] == 0
    assert all(figures["checks"].values()), figures["checks"]
    assert stdout.count("PASS") + stdout.count("FAIL") == 3, stdout


def test_reports_benchmark_runs_every_part(service_status: dict[str, str], tmp_path: Path):
    stdout, figures = run_smoke("bench.reports", (), service_status, tmp_path)
    assert figures["count"] == 3000
    # (b) asserts the report's row count equals the raw query's before it reports a figure.
    assert 2000 < figures["ssl_rows"] < 3000 and figures["report_bytes"] > 0
    for key in ("report_seconds", "raw_csv_writer_seconds", "one_process_seconds"):
        assert figures[key] > 0, key
    for viewer in ("mrao", "rao_10pct"):
        assert figures["dashboard"][viewer]["p95_ms"] > 0
        assert figures["dashboard"][viewer]["p50_ms"] > 0
    # The summary tables were folded (the run asserted their numbers equal the direct ones,
    # the month summary's "requests vs issued" included).
    assert figures["summary_rows"]["rows_after"] > 0
    assert figures["summary_rows"]["month_rows_after"] > 0
    # CPU per row was measured for (b) and for each process count of (c).
    assert figures["report_cpu_seconds"] > 0 and figures["raw_csv_writer_cpu_seconds"] > 0
    for processes in ("1", "2"):
        assert figures["processes"][processes]["worker_cpu"] > 0, processes
    assert stdout.count("PASS") + stdout.count("FAIL") == 7, stdout


def test_acme_benchmark_runs_every_part(service_status: dict[str, str], tmp_path: Path):
    stdout, figures = run_smoke(
        "bench.acme", ("redis-server", "pebble", "pebble-challtestsrv"), service_status, tmp_path
    )
    assert sorted(figures["runs"]) == ["certwright", "pebble"]
    for system, run in figures["runs"].items():
        # complete orders came back, none failed, and sampled certificates verify
        assert run["count"] > 0 and run["failures"] == 0, (system, run)
        assert run["verified"] > 0 and run["per_second"] > 0 and run["p99_ms"] > 0, run
        assert run["cpu_ms_total"] > 0, (system, run)
        assert run["polls_per_order"] > 0, (system, run)
    # Certwright's share is charged to its web, worker and PostgreSQL processes
    ours = figures["runs"]["certwright"]
    assert ours["stalled_rounds"] == 0, ours
    assert min(ours["cpu_ms_web"], ours["cpu_ms_workers"], ours["cpu_ms_postgres"]) > 0, ours
    assert set(figures["targets"]) == {"vs_pebble", "target"}
    assert stdout.count("PASS") + stdout.count("FAIL") == 1, stdout


def test_agents_benchmark_runs_every_part(service_status: dict[str, str], tmp_path: Path):
    """bench/discovery_agents.py: (b) a silent range over one agent and over two (network
    namespaces: root), (c) the TLS bed through an agent against the direct path."""
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("CI=true: the agents benchmark needs root (network namespaces)")
        pytest.skip("the agents benchmark needs root (network namespaces)")
    stdout, figures = run_smoke(
        "bench.discovery_agents", ("redis-server", "ip"), service_status, tmp_path
    )
    silent, bed = figures["b"], figures["c"]
    # Every run of both parts ended Successful and scanned every target.
    for group in silent["runs"].values():
        assert group and all(r["ok"] and r["targets"] == 512 for r in group), group
    for group in bed["runs"].values():
        assert group and all(r["ok"] and r["tls_endpoints"] == 64 for r in group), group
    # (c) says where a run's CPU and time went: per part, and per shard.
    for label, part in (("direct", "central"), ("agent", "agent")):
        for run in bed["runs"][label]:
            assert set(run["cpu"]) == {"central", "agent", "bed", "database"}, run
            assert run["cpu"][part] > 0 and run["shards"], run
            assert all(0 <= start <= done <= end for start, done, end in run["shards"]), run
    assert silent["verdict"] in ("PASS", "FAIL") and bed["verdict"] in ("PASS", "FAIL")
    assert stdout.count("PASS") + stdout.count("FAIL") == 2, stdout
