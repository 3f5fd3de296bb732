"""The command line alone, against a real `make run`-style server: tests/cli/pki_story.sh
sets up a CA hierarchy, profiles and a delegated domain with `config apply`, then requests,
approves (`--wait`), downloads (every format and a PKCS#12) and revokes, each `flask`
call a separate process. The server runs in embedded mode (no broker), so the approvals and
the job the script starts reach the server's worker only through the database: this is
also the proof that such jobs start within seconds rather than after the five-minute resend.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import PY, ROOT, Proc, app_env, describe, flask_ok, free_port, wait_until

SCRIPT = Path(__file__).with_name("pki_story.sh")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Proc]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = app_env(
        CW_INSTANCE_DIR=tmp_path / "instance",
        CW_ADMIN_PASSWORD="Correct-Horse-9-Battery",
        PORT=port,
        CW_BASE_URL=url,
        CW_SCHEDULER_INTERVAL=3600,  # the scheduler's pass must not be what runs the jobs
    )
    flask_ok("db", "upgrade", env=env)
    flask_ok("bootstrap", env=env)
    args = [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
    with Proc("gunicorn", args, env=env, logs=tmp_path) as web:
        wait_until(lambda: _answers(url + "/login"), timeout=60, what="gunicorn", why=describe(web))
        yield url, env, web
        assert web.alive(), web.log()


@pytest.mark.slow
@pytest.mark.timeout(900)  # some forty separate CLI processes; about 2 minutes on a quiet machine
def test_the_pki_story_from_the_command_line_alone(
    server: tuple[str, dict[str, str], Proc],
) -> None:
    url, env, web = server
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=ROOT,
        env={**env, "CW_URL": url, "FLASK": f"{PY} -m flask --app wsgi", "PYTHON": PY},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = f"{done.stdout}\n{done.stderr}\n--- server ---\n{web.log()}"
    assert done.returncode == 0, report
    assert done.stdout.rstrip().endswith("CLI story: OK"), report
    print(f"CLI story: {time.monotonic() - started:.0f} s")
