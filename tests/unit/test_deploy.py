"""The systemd units under deploy/systemd are valid (systemd-analyze verify) and supervise
the way docs/deployment.md says: restart always, one dramatiq process per worker unit,
SIGTERM to the main process only, absolute paths into the virtualenv."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
UNITS = ROOT / "deploy" / "systemd"
SERVICES = ("certwright-web.service", "certwright-worker@.service", "certwright-scheduler.service")
IN_CI = os.environ.get("CI", "").lower() == "true"


def settings(unit: str) -> dict[str, list[str]]:
    """key -> values, in order, of a unit file (comments and sections dropped)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def installed(tmp_path: Path) -> Path:
    """The units as an administrator installs them, pointed at this checkout: ExecStart
    binaries must exist for verify. The environment file is the example."""
    target = tmp_path / "units"
    target.mkdir()
    shutil.copy(UNITS / "certwright.env.example", tmp_path / "certwright.env")
    for path in [*UNITS.glob("*.service"), *UNITS.glob("*.target")]:
        text = (
            path.read_text()
            .replace("/opt/certwright", str(ROOT))
            .replace("/etc/certwright/", f"{tmp_path}/")
        )
        # verify needs an instance of the worker template
        name = path.name.replace("@.service", "@1.service")
        (target / name).write_text(text)
    return target


def verify(units: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        message = "systemd-analyze is missing (Debian package systemd; `make test` installs it)"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    files = sorted(str(p) for p in units.iterdir())
    return subprocess.run(
        [tool, "verify", *files], capture_output=True, text=True, timeout=60, check=False
    )


def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    units = installed(tmp_path)
    assert {p.name for p in units.iterdir()} == {
        "certwright.target",
        "certwright-web.service",
        "certwright-worker@1.service",
        "certwright-scheduler.service",
    }
    done = verify(units)
    # verify exits 0 on an unknown key or a value it ignores, but says so: silence is valid.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_verify_catches_what_would_break_a_unit(tmp_path: Path) -> None:
    units = installed(tmp_path)
    web = units / "certwright-web.service"
    web.write_text(web.read_text().replace(".venv/bin/gunicorn", ".venv/bin/no-such-gunicorn"))
    worker = units / "certwright-worker@1.service"
    worker.write_text(worker.read_text().replace("Restart=always", "Restart=sometimes"))
    done = verify(units)
    output = done.stdout + done.stderr
    assert "no-such-gunicorn is not executable" in output
    assert "Failed to parse service restart specifier" in output


@pytest.mark.parametrize("unit", SERVICES)
def test_every_process_is_supervised_and_restarted(unit: str) -> None:
    found = settings(unit)
    assert found["Restart"] == ["always"]
    assert found["KillMode"] == ["mixed"]  # SIGTERM to the main process, which passes it on
    assert found["StartLimitIntervalSec"] == ["0"]  # never give up restarting
    exec_start = found["ExecStart"][0].split()
    assert exec_start[0].startswith("/opt/certwright/.venv/bin/")  # no PATH assumed
    assert found["EnvironmentFile"][0] == "/etc/certwright/certwright.env"
    assert found["WantedBy"] == ["certwright.target"] and found["PartOf"] == ["certwright.target"]


def test_a_worker_unit_runs_one_dramatiq_process() -> None:
    exec_start = settings("certwright-worker@.service")["ExecStart"][0].split()
    assert exec_start[:3] == ["/opt/certwright/.venv/bin/dramatiq", "app.actors", "--processes"]
    assert exec_start[3] == "1"
    # its own settings file per instance, optional
    assert (
        "-/etc/certwright/worker-%i.env"
        in settings("certwright-worker@.service")["EnvironmentFile"]
    )


def test_the_example_environment_is_one_the_start_accepts(monkeypatch, tmp_path):
    """Every setting of certwright.env.example read as the processes read it: the start
    accepts them (an https CW_BASE_URL needs CW_PKI_URL), and what they say takes effect."""
    from app.config import Config

    for line in (UNITS / "certwright.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            monkeypatch.setenv(key.strip(), value.strip())
    monkeypatch.setenv("CW_INSTANCE_DIR", str(tmp_path))
    config = Config()
    assert config.CW_BASE_URL == "https://certwright.example.com"
    assert config.CW_PKI_URL == "http://certwright.example.com"
    assert config.SESSION_COOKIE_SECURE is True
