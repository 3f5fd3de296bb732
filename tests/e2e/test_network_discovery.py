"""Network discovery in a real browser, the issue's "done when": an admin creates an
assignment rule and a task for a host list and a CIDR range with a weekly schedule (seeing
the five-run preview), runs it, watches the progress reach 100% in the task list, and finds
every test-bed certificate in Network Assets with the right health flags, the matched ones
under Certificates > SSL with who placed them.

The test bed runs in this process: real TLS servers on 127.0.33.x that the console's own
worker scans.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from tests.e2e.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, Console
from tests.tlsbed.certs import NOW, issue, make_name
from tests.tlsbed.farm import ServerFarm, free_port, server_context

NET = "127.0.33"
RULE = "Example Corp servers"
TASK = "Shop network"
ORG = "My Organization"  # made by `flask bootstrap`
SERVERS = {
    # where: (CN presented, expected health flags)
    "www.shop.test": ("www.shop.test", []),
    "api.shop.test": ("other.shop.test", ["Host name mismatch"]),
    f"{NET}.1": ("old.legacy.test", ["Expired"]),
    f"{NET}.2": ("self.shop.test", ["Self-signed leaf"]),
    f"{NET}.3": ("lonely.shop.test", ["Incomplete chain"]),
    f"{NET}.4": ("", ["Handshake timeout"]),  # accepts, never answers
}
MATCHED = {"www.shop.test", "other.shop.test", "lonely.shop.test"}  # subject O Example Corp


@pytest.fixture
def testbed() -> Iterator[SimpleNamespace]:
    root = issue(make_name("Shop Root", "Example Corp"), ca=True)
    inter = issue(make_name("Shop Intermediate", "Example Corp"), ca=True, issuer=root)

    def leaf(cn: str, org: str = "Example Corp", **kw: object) -> object:
        return issue(make_name(cn, org), issuer=inter, sans=[cn], **kw)  # type: ignore[arg-type]

    hosts = [f"{NET}.{i}" for i in (1, 2, 3, 4, 20, 21)]
    port = free_port(hosts)
    with ServerFarm() as farm:
        farm.add_tls(f"{NET}.20", port, server_context([leaf("www.shop.test"), inter]))
        farm.add_tls(f"{NET}.21", port, server_context([leaf("other.shop.test"), inter]))
        expired = leaf(
            "old.legacy.test",
            "Legacy Ltd",
            not_before=NOW - dt.timedelta(days=400),
            not_after=NOW - dt.timedelta(days=5),
        )
        farm.add_tls(f"{NET}.1", port, server_context([expired, inter]))
        farm.add_tls(f"{NET}.2", port, server_context([issue(make_name("self.shop.test"))]))
        farm.add_tls(f"{NET}.3", port, server_context([leaf("lonely.shop.test")]))
        farm.add_silent(f"{NET}.4", port)
        yield SimpleNamespace(port=port)


def choose(c: Console, selector: str, label: str) -> None:
    c.page.select_option(selector, label=label)


def rows(c: Console) -> list[dict[str, str]]:
    """The list table as {column heading: cell text} rows."""
    return list(
        c.page.evaluate(
            """() => {
                const table = document.querySelector('table.model-list');
                const heads = [...table.querySelectorAll('thead th')].map(th => th.innerText.trim());
                return [...table.querySelectorAll('tbody tr, tr')]
                    .filter(tr => tr.querySelector('td.col-ip, td.col-name, td.col-common_name'))
                    .map(tr => Object.fromEntries(
                        [...tr.children].map((td, i) => [heads[i], td.innerText.trim()])));
            }"""
        )
    )


def test_discover_the_test_bed(console: Console, testbed: SimpleNamespace) -> None:
    c, page = console, console.page
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)

    # --- an assignment rule, dry-run first (nothing has been found yet) --------------
    c.menu("Discovery", "Assignment Rules")
    page.click("ul.nav-tabs a:has-text('Create')")
    page.fill("#name", RULE)
    choose(c, "#conditions-0-field", "Subject O (organization)")
    choose(c, "#conditions-0-operator", "equals")
    page.fill("#conditions-0-value", "Example Corp")
    choose(c, "#target", f"{ORG} (whole organization)")
    page.click("#cw-dry-run")
    page.wait_for_load_state()
    assert "no certificate found so far matches this rule" in page.inner_text("#cw-dry-run-results")
    c.shot("rule-dry-run-before-any-scan")
    c.save()
    assert f"Saved the assignment rule '{RULE}'." in c.flashes()
    c.shot("rules")

    # --- the task: a host list and a CIDR range, weekly, with the five-run preview ----
    c.menu("Discovery", "Network Discovery Tasks")
    page.click("ul.nav-tabs a:has-text('Create')")
    page.fill("#name", TASK)
    page.fill("#ranges", f"www.shop.test\napi.shop.test\n{NET}.0/29")
    page.fill("#ports", str(testbed.port))
    page.fill("#host_overrides", f"www.shop.test = {NET}.20\napi.shop.test = {NET}.21")
    page.fill("#connect_timeout", "2")
    page.fill("#handshake_timeout", "3")
    # The built-in scanner unless a scanning agent is chosen (none exists here).
    assert page.input_value("#agent") == "Auto"
    assert page.eval_on_selector_all("#agent option", "os => os.map(o => o.value)") == ["Auto"]
    choose(c, "#rule_order-0", f"{RULE} → {ORG}")
    assert page.is_hidden("#schedule_weekday")  # manual: no schedule fields yet
    choose(c, "#schedule_kind", "Weekly")
    assert page.is_visible("#schedule_weekday") and page.is_hidden("#schedule_at")
    choose(c, "#schedule_weekday", "Monday")
    page.fill("#schedule_time", "03:00")
    choose(c, "#schedule_timezone", "Europe/Berlin")
    # The preview follows the form as it changes (script), ...
    page.wait_for_function(
        "() => (document.querySelector('#cw-schedule-preview .cw-preview-describe') || {})"
        ".textContent === 'Weekly on Monday at 03:00 (Europe/Berlin)'"
    )
    live = page.locator("#cw-schedule-preview ol li").all_inner_texts()
    assert len(live) == 5 and all(re.match(r"Mon \d{4}-\d\d-\d\d 03:00 CES?T", r) for r in live), (
        live
    )
    c.shot("task-form-weekly-preview")
    # ... and the Preview button asks the server for the same (no script needed).
    page.click("#cw-preview")
    page.wait_for_load_state()
    assert page.locator("#cw-schedule-preview ol li").all_inner_texts() == live
    assert page.input_value("#name") == TASK  # the form kept what was typed
    c.save()
    assert f"Saved the discovery task '{TASK}'." in c.flashes(), c.flashes()
    task = rows(c)[0]
    assert task["Name"] == TASK and task["Owner"] == "account-wide"
    assert task["Schedule"] == "Weekly on Monday at 03:00 (Europe/Berlin)"
    assert task["Ranges"] == f"www.shop.test, api.shop.test, {NET}.0/29"
    assert task["Status"] == "Never scanned"
    c.shot("tasks-before-scan")

    # --- Scan, and watch the Status column without reloading ----------------------------
    page.click("form.cw-scan-form button:has-text('Scan')")
    page.wait_for_load_state()
    assert re.search(rf"Scan #\d+ of '{TASK}' started: 10 targets in 1 shard\(s\)\.", c.flashes())
    page.evaluate("() => { window.cwSameDocument = true; }")
    status = page.locator(".cw-task-status").first
    seen = []
    for _ in range(300):
        seen.append(
            (status.get_attribute("data-status"), page.inner_text(".cw-task-status .cw-percent"))
        )
        if seen[-1][0] == "Running" and len(seen) == 3:
            c.shot("tasks-scanning")
        if seen[-1][0] != "Running":
            break
        page.wait_for_timeout(100)
    assert seen[0][0] == "Running" and seen[-1] == ("Successful", "100%"), seen
    assert page.evaluate("() => window.cwSameDocument === true")  # updated in place
    assert page.evaluate("() => window.cwPolls") >= 1
    assert page.is_visible("form.cw-scan-form") and page.is_hidden("form.cw-cancel-form")
    c.shot("tasks-after-scan")
    page.click(".cw-last-run")
    page.wait_for_load_state()
    history = page.locator("#cw-history tbody tr").first.inner_text()
    assert "Successful" in history and "10 / 10" in history
    c.shot("task-history")

    # --- Network Assets: every test-bed endpoint, with its health flags ----------------
    c.menu("Discovery", "Network Assets")
    found = {(r["Host name"] or r["IP"]): r for r in rows(c)}
    assert set(found) == set(SERVERS), sorted(found)
    for where, (cn, flags) in SERVERS.items():
        row = found[where]
        assert row["CN"] == cn, (where, row)
        health = [] if row["Health"] == "none" else row["Health"].split("\n")
        assert sorted(health) == sorted(flags), (where, row["Health"])
        assert row["Found by task"] == TASK
    states = {r["CN"]: r["Inventory state"] for r in found.values() if r["CN"]}
    assert states == {cn: "Assigned" if cn in MATCHED else "Not assigned" for cn in states}
    summary = page.locator(f"#cw-summary-table tr:has-text('{TASK}')")
    counts = dict(
        zip(
            ["total", "managed", "external", "self_signed", "expired", "expiring_30"],
            summary.locator("td").all_inner_texts()[1:],
            strict=True,
        )
    )
    assert counts == {
        "total": "5",
        "managed": "0",
        "external": "5",
        "self_signed": "1",
        "expired": "1",
        "expiring_30": "0",
    }
    page.wait_for_selector("#cw-scan-chart .main-svg")  # drawn by the locally served plotly.js
    assert "certificates per scan" in page.inner_text("#cw-scan-chart")
    c.shot("network-assets")
    # Filter by a health flag, as from the Filters menu.
    c.go("/admin/network_assets/?flt0_expired_equals=1")
    assert [r["CN"] for r in rows(c)] == ["old.legacy.test"]
    c.shot("network-assets-expired")
    c.go("/admin/network_assets/")
    page.locator("tr", has_text="api.shop.test").locator("a[title='View Record']").click()
    page.wait_for_load_state()
    assert "Host name mismatch" in page.inner_text("#cw-endpoint-flags")
    chain = page.inner_text("#cw-presented-chain")
    assert chain.index("CN=other.shop.test") < chain.index("CN=Shop Intermediate")
    assert f"assigned by rule {RULE}" in page.inner_text("#cw-placed")
    c.shot("network-asset-details")

    # --- the matched ones under Certificates > SSL -------------------------------------
    c.menu("Certificates", "SSL Certificates")
    inventory = {r["Common name"]: r for r in rows(c)}
    assert set(inventory) == MATCHED
    for row in inventory.values():
        assert row["Organization"] == ORG and row["Status"] == "External"
        assert row["Origin"] == "Discovered" and row["Assigned by"] == f"rule {RULE}"
        assert row["Install state"].startswith("Installed (")
    c.shot("ssl-certificates")
    page.locator("tr", has_text="www.shop.test").locator("a[title='View Record']").click()
    page.wait_for_load_state()
    assert f"assigned by rule {RULE}" in page.inner_text("#cw-cert-placed")
    assert "www.shop.test" in page.inner_text("#cw-deployed")
    c.shot("ssl-certificate-details")

    # --- bulk Assign To: the unmatched expired certificate, by hand ----------------------
    c.menu("Discovery", "Network Assets")
    page.locator("tr", has_text="old.legacy.test").locator("input.action-checkbox").check()
    page.click("a.dropdown-toggle:has-text('With selected')")
    page.click("a.dropdown-item:has-text('Assign To')")
    page.wait_for_load_state()
    assert "old.legacy.test" in page.inner_text("#cw-assign-list")
    choose(c, "#target", f"{ORG} (whole organization)")
    c.shot("assign-to")
    page.click("button:has-text('Assign')")
    page.wait_for_load_state()
    assert f"1 certificate(s) assigned to {ORG}." in c.flashes()
    c.menu("Certificates", "SSL Certificates")
    inventory = {r["Common name"]: r for r in rows(c)}
    assert inventory["old.legacy.test"]["Assigned by"] == ADMIN_LOGIN
    assert inventory["old.legacy.test"]["Status"] == "External"

    # --- Import from CSV: every bad line is listed, nothing is created --------------------
    c.menu("Discovery", "Network Discovery Tasks")
    page.click("#cw-import-csv")
    page.fill("#text", "name,ranges,ports\nBranch A,10.20.0.0/24,443\nBranch B,10.21.0.300,443\n")
    page.click("button:has-text('Import')")
    page.wait_for_load_state()
    problems = page.inner_text("#cw-import-problems")
    assert "line 3: ranges: line 1: '10.21.0.300'" in problems
    c.shot("import-csv-errors")
    c.menu("Discovery", "Network Discovery Tasks")
    assert [r["Name"] for r in rows(c)] == [TASK]
    page.locator("tr", has_text=TASK).locator("a[title='View Record']").click()
    page.wait_for_load_state()
    details = page.inner_text("table.searchable")
    assert f"1. {RULE}" in details and "Weekly on Monday at 03:00 (Europe/Berlin)" in details
    assert re.search(r"Next run\s+\d{4}-\d\d-\d\d 0[12]:00 UTC", details), details
    c.shot("task-details")
    page.click("ul.nav-tabs a:has-text('History')")
    page.wait_for_load_state()
    assert page.locator("#cw-history tbody tr").count() == 1
