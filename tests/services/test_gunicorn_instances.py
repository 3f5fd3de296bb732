"""Two Certwright web servers on one host (two deployments, or production beside staging)
keep separate gunicorn control sockets: gunicornc reaches the one it names, and stopping
one leaves the other's socket alone."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.processes import PY, ROOT, Proc, app_env, free_port, port_open, wait_until

GUNICORNC = str(Path(PY).parent / "gunicornc")
BOOT = 120  # seconds gunicorn may take to start on a busy machine


def web(name: str, instance: Path, home: Path, logs: Path, **more: object) -> tuple[Proc, int]:
    port = free_port()
    env = app_env(
        CW_INSTANCE_DIR=instance,
        DATABASE_URL=f"sqlite:///{instance / 'certwright.db'}",
        PORT=port,
        CW_EMBEDDED_WORKER="0",
        HOME=home,  # gunicorn's default socket would be ~/.gunicorn/gunicorn.ctl
        **more,
    )
    env.pop("XDG_RUNTIME_DIR", None)  # ... or $XDG_RUNTIME_DIR/gunicorn.ctl
    proc = Proc(
        name,
        [PY, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        env=env,
        logs=logs,
    )
    return proc, port


def arbiter(socket_path: Path) -> int:
    """The pid of the gunicorn master that answers on the control socket."""
    done = subprocess.run(
        [GUNICORNC, "-s", str(socket_path), "-j", "-c", "show all"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return int(json.loads(done.stdout)["arbiter"]["pid"])


def started(*procs: tuple[Proc, int]) -> None:
    for proc, port in procs:
        wait_until(
            lambda port=port: port_open(port),
            timeout=BOOT,
            what=f"{proc.name} on port {port}",
            why=proc.log,
        )


def test_two_gunicorns_on_one_host_have_their_own_control_sockets(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    web_a, port_a = web("web-a", first, home, tmp_path)
    web_b, port_b = web("web-b", second, home, tmp_path)
    with web_a, web_b:
        started((web_a, port_a), (web_b, port_b))
        sockets = (first / "gunicorn.ctl", second / "gunicorn.ctl")
        wait_until(
            lambda: all(s.exists() for s in sockets),
            timeout=30,
            what="a control socket in each instance folder",
            why=lambda: web_a.log() + web_b.log(),
        )
        assert arbiter(sockets[0]) == web_a.pid
        assert arbiter(sockets[1]) == web_b.pid
        assert not (home / ".gunicorn").exists()
        web_b.stop()
        assert not sockets[1].exists()
        assert arbiter(sockets[0]) == web_a.pid  # untouched by B's exit


def test_the_control_socket_can_be_moved_or_turned_off(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    elsewhere = tmp_path / "run" / "web.ctl"
    elsewhere.parent.mkdir()
    moved, port_moved = web(
        "web-moved", tmp_path / "m", home, tmp_path, CW_CONTROL_SOCKET=elsewhere
    )
    off, port_off = web("web-off", tmp_path / "o", home, tmp_path, CW_CONTROL_SOCKET="off")
    with moved, off:
        started((moved, port_moved), (off, port_off))
        wait_until(lambda: elsewhere.exists(), timeout=30, what="the moved socket", why=moved.log)
        assert arbiter(elsewhere) == moved.pid
        assert not (tmp_path / "o" / "gunicorn.ctl").exists()
        assert not (home / ".gunicorn").exists()
        assert "Control socket listening" not in off.log()


def test_a_second_server_in_one_instance_folder_is_refused_its_control_socket(
    tmp_path: Path,
) -> None:
    """A second server started in the same instance folder (the plain-HTTP /pki/ listener
    beside a TLS one, say) without a control socket of its own stops at once, instead of
    taking the first one's socket over; with its own, it starts."""
    home = tmp_path / "home"
    home.mkdir()
    instance = tmp_path / "i"
    instance.mkdir()
    first, port_first = web("web-first", instance, home, tmp_path)
    with first:
        started((first, port_first))
        socket_path = instance / "gunicorn.ctl"
        wait_until(socket_path.exists, timeout=30, what="the first socket", why=first.log)
        second, _ = web("web-second", instance, home, tmp_path)
        with second:
            assert second.popen.wait(timeout=BOOT) != 0
            assert f"control socket in use: {socket_path}" in second.log(), second.log()
            assert "Booting worker" not in second.log()
        assert arbiter(socket_path) == first.pid
        own = tmp_path / "second.ctl"
        third, port_third = web("web-third", instance, home, tmp_path, CW_CONTROL_SOCKET=own)
        with third:
            started((third, port_third))
            wait_until(own.exists, timeout=30, what="the third's socket", why=third.log)
            assert arbiter(own) == third.pid
            assert arbiter(socket_path) == first.pid
