"""The browser tier: the real console (gunicorn + embedded worker, SQLite in a temporary
instance folder) driven by Playwright through Debian's Chromium.

Every test here is marked `browser`. Without Chromium (or Playwright) the tests skip with
the reason, except under CI=true, where they fail. CW_CHROMIUM names another binary;
CW_E2E_SCREENSHOTS keeps the screenshots in a folder of your choice (default: pytest's
temporary folder of the run, printed at the end).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.processes import PY, Proc, app_env, describe, flask_ok, free_port, wait_until

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("CW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_LOGIN = "admin"
ADMIN_PASSWORD = "Correct-Horse-9-Battery"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.browser)


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and the browser tier cannot run: {message}", pytrace=False)
    pytest.skip(f"browser tier: {message}")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = shutil.which(CHROMIUM) if not os.path.isabs(CHROMIUM) else CHROMIUM
    if not path or not os.access(path, os.X_OK):
        _unavailable(f"no Chromium at {CHROMIUM} (`make browser` installs Debian's package)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        _unavailable(f"Playwright is not installed ({exc}); `make venv` installs it")
    assert path
    return path


@pytest.fixture(scope="module")
def console_url(tmp_path_factory: pytest.TempPathFactory, chromium: str) -> Iterator[str]:
    """The console as `make run` serves it: migrated, bootstrapped, one gunicorn process
    with the embedded worker and scheduler, on a free port of 127.0.0.1 — a fresh install
    per test module, so each story starts from a new machine."""
    home = tmp_path_factory.mktemp("console")
    port = free_port()
    env = app_env(
        CW_INSTANCE_DIR=home / "instance",
        CW_ADMIN_LOGIN=ADMIN_LOGIN,
        CW_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CW_SCHEDULER_INTERVAL=1,
        PORT=port,
        CW_BASE_URL=f"http://127.0.0.1:{port}",
    )
    flask_ok("db", "upgrade", env=env)
    assert "Created the first MRAO 'admin'." in flask_ok("bootstrap", env=env)
    url = f"http://127.0.0.1:{port}"
    with Proc(
        "gunicorn", [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env=env, logs=home
    ) as web:
        wait_until(lambda: _answers(url + "/login"), timeout=30, what="gunicorn", why=describe(web))
        yield url
        assert web.alive(), web.log()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("CW_E2E_SCREENSHOTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser_context(chromium: str) -> Iterator[Any]:
    """Debian's Chromium with a fresh profile (user-data dir) per test module.

    Module scope on purpose: Playwright's sync API keeps an asyncio loop marked as running
    on the main thread while it is open, which would break asyncio.run() in later tests."""
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="cw-chromium-")
    try:
        with sync_playwright() as pw:
            context = pw.chromium.launch_persistent_context(
                profile,
                executable_path=chromium,
                headless=True,
                args=CHROMIUM_ARGS,
                viewport={"width": 1280, "height": 800},
                locale="en-US",
                timezone_id="UTC",
            )
            context.set_default_timeout(10_000)
            try:
                yield context
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Console:
    """One browser tab on the console, with the steps a person takes."""

    page: Any
    base: str
    shots: Path
    taken: list[Path] = field(default_factory=list)

    def go(self, path: str) -> Any:
        return self.page.goto(self.base + path)

    def shot(self, name: str) -> Path:
        path = (
            self.shots / f"{len(self.taken) + 1:02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}.png"
        )
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path

    def sign_in(self, login: str, password: str) -> None:
        self.go("/login")
        self.page.fill("#login", login)
        self.page.fill("#password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/admin/")

    def sign_out(self) -> None:
        self.page.click("#cw-user-menu")
        self.page.click("#cw-sign-out")
        self.page.wait_for_url(re.compile(r".*/login$"))

    def menu(self, top: str, entry: str | None = None) -> None:
        """Open a console tab, or an entry of a tab's menu, by clicking like a person."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        # The page's scripts first: a tab clicked before Bootstrap's dropdown handler is
        # there opens nothing (CI once clicked Reports right after a form's redirect).
        self.page.wait_for_load_state()
        nav = self.page.locator("#admin-navbar-collapse ul.navbar-nav").first
        tab = nav.locator(":scope > li > a", has_text=re.compile(rf"^\s*{re.escape(top)}\s*$"))
        tab.click()
        if entry is not None:
            # The whole name: "Notifications" (Settings) is also inside "Sent Notifications".
            exact = re.compile(rf"^\s*{re.escape(entry)}\s*$")
            item = nav.locator("a.dropdown-item", has_text=exact)
            try:
                item.wait_for(state="visible", timeout=3000)
            except PlaywrightTimeout:
                tab.click()  # once more, as a person would when a menu did not open
            item.click()
        self.page.wait_for_load_state()

    def save(self) -> None:
        self.page.click("input[type=submit][value=Save]")
        self.page.wait_for_load_state()

    def field_errors(self, field_id: str) -> str:
        return str(
            self.page.locator(f".form-group:has(#{field_id}) .invalid-feedback").inner_text()
        )

    def flashes(self) -> str:
        return " ".join(self.page.locator(".alert").all_inner_texts())

    def main_text(self) -> str:
        """The page's own content, without the navigation bar."""
        return str(self.page.locator("body").inner_text()).split("\n", 1)[-1]

    def table_column(self, label: str) -> list[str]:
        """The cells of one column of the list table, by the column's heading."""
        cells = self.page.evaluate(
            """(label) => {
                const table = document.querySelector('table.model-list');
                if (!table) return null;
                const heads = [...table.querySelectorAll('thead th')].map(
                    th => th.innerText.trim());
                const at = heads.indexOf(label);
                if (at < 0) return null;
                return [...table.querySelectorAll('tbody tr')]
                    .filter(tr => tr.children.length > at)
                    .map(tr => tr.children[at].innerText.trim());
            }""",
            label,
        )
        assert cells is not None, f"no list table with a column '{label}' on {self.page.url}"
        return list(cells)


@pytest.fixture
def console(
    browser_context: Any, console_url: str, shots: Path, request: pytest.FixtureRequest
) -> Iterator[Console]:
    browser_context.clear_cookies()  # every test starts signed out
    page = browser_context.new_page()
    mine = shots / request.node.name
    mine.mkdir(exist_ok=True)
    try:
        yield Console(page=page, base=console_url, shots=mine)
    finally:
        page.close()
