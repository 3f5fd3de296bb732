"""The console in a real browser: every tab and menu entry shows its real content, and the
foundation's story works end to end: an MRAO builds the structure, an RAO and a DRAO each
see only their own part of it, bad input is explained at the field, and Account
Activity shows who did what."""

from __future__ import annotations

import re

from tests.e2e.conftest import ADMIN_LOGIN, ADMIN_PASSWORD, Console

OTHER_ORG = "Initech"
OTHER_DOMAIN = "initech.example"
ORG = "Globex Corporation"
DEPT = "Engineering"
RAO, DRAO = "rao.globex", "drao.eng"
RAO_PASSWORD, DRAO_PASSWORD = "rao-Password-2024!", "drao-Password-2024!"


def test_every_console_page_shows_its_content(console: Console) -> None:
    c, page = console, console.page
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)

    c.menu("Dashboard")
    assert page.title() == "Dashboard - Certwright"
    assert "Welcome to Certwright, Master administrator" in page.inner_text("#cw-welcome")
    counts = {
        label: int(page.inner_text(f"[data-count='{label}']"))
        for label in ("Organizations", "Administrators", "Domains")
    }
    c.shot("dashboard")

    for kind in ("SSL", "Client", "Device", "Code Signing"):
        c.menu("Certificates", f"{kind} Certificates")
        assert page.title() == f"{kind} Certificates - Certwright"
        assert c.table_column("Common name") == []  # a new install has no certificates
        c.shot(f"certificates-{kind}")
        c.menu("Certificates", f"{kind} Requests")
        assert page.title() == f"{kind} Requests - Certwright"
        c.shot(f"requests-{kind}")

    for entry, heading in (
        ("Network Assets", "IP"),
        ("Network Discovery Tasks", "Name"),
        ("Assignment Rules", "Name"),
        ("Agents", "Agent"),
    ):
        c.menu("Discovery", entry)
        assert page.title() == f"{entry} - Certwright"
        assert c.table_column(heading) == []  # nothing discovered on a new install
        c.shot(f"discovery-{entry}")

    c.menu("Reports", "Account Activity")
    assert page.title() == "Account Activity - Certwright"
    assert "signin.success" in c.table_column("Action")
    assert {"bootstrap", ADMIN_LOGIN} <= set(c.table_column("Actor"))
    c.shot("reports-account-activity")

    c.menu("Admins")
    admins = dict(zip(c.table_column("Login"), c.table_column("Scopes"), strict=True))
    assert admins[ADMIN_LOGIN] == "account-wide"
    assert len(admins) == counts["Administrators"]
    c.shot("admins")

    c.menu("Settings", "Organizations")
    countries = dict(zip(c.table_column("Name"), c.table_column("Country"), strict=True))
    assert countries["My Organization"] == "US"  # made by `flask bootstrap`
    assert len(countries) == counts["Organizations"]
    c.shot("settings-organizations")

    for entry, heading in (
        ("Departments", "Organization"),
        ("Domains", "Domain"),
        ("Domain Delegations", "Domain"),
        ("Private CAs", "Name"),
        ("Certificate Profiles", "Name"),
    ):
        c.menu("Settings", entry)
        assert page.title() == f"{entry} - Certwright"
        rows = c.table_column(heading)  # the list table is there (empty on a new install)
        if entry == "Domains":
            assert len(rows) == counts["Domains"]
        c.shot(f"settings-{entry}")

    c.menu("About", "About Certwright")
    about = page.locator("#cw-about")
    assert about.locator("[data-about='database']").inner_text() == "sqlite"
    assert about.locator("[data-about='broker']").inner_text() == "embedded"
    assert re.match(
        r"1 alive\s+embedded on \S+ \(pid \d+\)",
        about.locator("[data-about='workers']").inner_text(),
    )
    assert "Verify the audit log chain" in about.inner_text()
    c.shot("about")

    # The embedded scheduler ran the system jobs of a new install.
    c.menu("About", "Background Jobs")
    for _ in range(50):
        if "audit chain intact" in " ".join(c.table_column("Message")):
            break
        page.wait_for_timeout(200)
        page.reload()
    messages = dict(zip(c.table_column("Kind"), c.table_column("Message"), strict=True))
    assert re.fullmatch(r"audit chain intact: \d+ rows verified", messages["audit_verify"])
    assert set(c.table_column("Status")) == {"done"}
    c.shot("about-background-jobs")

    c.menu("About", "Mail Outbox")
    assert page.title() == "Mail Outbox - Certwright"
    assert c.table_column("Subject") == []  # nothing sends mail yet
    c.shot("about-mail-outbox")

    page.click("#cw-user-menu")
    page.click("a.dropdown-item:has-text('My Profile')")
    assert page.title() == "My Profile - Certwright"
    assert "account-wide" in c.main_text() and "Change password" in c.main_text()
    c.shot("my-profile")
    c.sign_out()
    assert "You are signed out." in c.flashes()


def choose(c: Console, field_id: str, *labels: str) -> None:
    c.page.select_option(f"#{field_id}", label=list(labels) if len(labels) > 1 else labels[0])


def options(c: Console, field_id: str) -> list[str]:
    return [o.strip() for o in c.page.locator(f"#{field_id} option").all_inner_texts()]


def tick(c: Console, field_id: str, *labels: str) -> None:
    """Tick checkboxes of a checkbox list by their labels, as a person clicks them."""
    for label in labels:
        c.page.locator(f"#{field_id} li", has_text=label).locator("input").check()


def assert_checkboxes_stay_in_their_field(c: Console, field_id: str) -> None:
    """Every option of a checkbox list is inside the list's box, above the Save button."""
    box = c.page.locator(f"#{field_id}").bounding_box()
    save = c.page.locator("input[type=submit][value=Save]").bounding_box()
    for item in c.page.locator(f"#{field_id} li").all():
        part = item.bounding_box()
        assert box["y"] <= part["y"] and part["y"] + part["height"] <= box["y"] + box["height"], (
            f"'{item.inner_text()}' sticks out of the #{field_id} box"
        )
    assert box["y"] + box["height"] <= save["y"], f"#{field_id} runs under the Save button"


def create_org(c: Console, name: str, country: str, city: str) -> None:
    c.menu("Settings", "Organizations")
    c.page.click("a:has-text('Create')")
    c.page.fill("#name", name)
    c.page.fill("#city", city)
    choose(c, "country", country)
    c.save()
    assert f"Organization '{name}' created." in c.flashes(), c.flashes()


def create_domain(c: Console, name: str, target: str, *types: str) -> None:
    c.go("/admin/domain/new/")
    c.page.fill("#name", name)
    choose(c, "target", target)
    assert_checkboxes_stay_in_their_field(c, "types")
    tick(c, "types", *types)
    c.save()
    assert f"Domain '{name}' created." in c.flashes(), c.flashes()


def grant(c: Console, place: str, *types: str) -> None:
    """Tick a scope in the administrator form's scope picker, and privileges on it."""
    row = c.page.locator(f"#scopes-table tr[data-cw-search='{place}']")
    row.locator("input[data-cw-scope]").check()
    for label in types:
        row.locator(f"input[aria-label='{label} on {place}']").check()


def test_foundation_story(console: Console) -> None:
    c, page = console, console.page
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)

    # --- the MRAO builds the structure; bad input is explained at its field -------------
    c.menu("Settings", "Organizations")
    page.click("a:has-text('Create')")
    page.fill("#name", ORG)
    c.save()  # no country chosen: the browser itself asks for one, nothing is sent
    assert page.eval_on_selector("#country", "s => s.validity.valueMissing")
    assert page.eval_on_selector("#country", "s => s.validationMessage")  # shown at the field
    assert "/admin/organization/new/" in page.url and not c.flashes()
    c.shot("story-org-country-missing")
    # A code that is not in the list (a hand-made request) is refused by the service.
    page.eval_on_selector("#country", "s => s.add(new Option('Atlantis (XX)', 'XX'))")
    choose(c, "country", "Atlantis (XX)")
    c.save()
    assert "'XX' is not an ISO 3166 two-letter country code" in c.field_errors("country")
    page.fill("#city", "Berlin")
    choose(c, "country", "Germany (DE)")
    c.save()
    assert f"Organization '{ORG}' created." in c.flashes()
    create_org(c, OTHER_ORG, "United States of America (US)", "Austin")
    c.menu("Settings", "Organizations")
    page.click("a:has-text('Create')")
    page.fill("#name", ORG.upper())
    choose(c, "country", "Germany (DE)")
    c.save()
    assert f"An organization named '{ORG.upper()}' already exists." in c.field_errors("name")
    c.menu("Settings", "Organizations")
    assert sorted(c.table_column("Name")) == [ORG, OTHER_ORG, "My Organization"]
    c.shot("story-organizations")

    c.menu("Settings", "Departments")
    page.click("a:has-text('Create')")
    choose(c, "organization_id", ORG)
    page.fill("#name", DEPT)
    c.save()
    assert f"Department '{ORG} / {DEPT}' created." in c.flashes()
    c.go("/admin/department/new/")
    choose(c, "organization_id", OTHER_ORG)
    page.fill("#name", "Accounting")
    c.save()

    c.menu("Settings", "Domains")
    page.click("a:has-text('Create')")
    c.shot("story-domain-form")
    create_domain(c, "globex.example", f"{ORG} (whole organization)", "SSL", "Code Signing")
    create_domain(c, "eng.globex.example", f"{ORG} / {DEPT}", "SSL")
    create_domain(c, OTHER_DOMAIN, f"{OTHER_ORG} (whole organization)", "SSL")
    c.go("/admin/domain/new/")
    page.fill("#name", "GLOBEX.example")
    c.save()
    assert "The domain globex.example already exists" in c.field_errors("name")
    c.shot("story-domain-duplicate")
    page.fill("#name", "not a domain")
    c.save()
    assert "'not a domain' is not a valid domain name" in c.field_errors("name")
    c.menu("Settings", "Domains")
    assert c.table_column("Domain") == ["eng.globex.example", "globex.example", OTHER_DOMAIN]
    delegations = dict(zip(c.table_column("Domain"), c.table_column("Delegated to"), strict=True))
    assert delegations["globex.example"] == f"{ORG} Approved SSL, Code Signing"
    assert delegations["eng.globex.example"] == f"{ORG} / {DEPT} Approved SSL"
    c.shot("story-domains")

    c.menu("Admins")
    page.click("a:has-text('Create')")
    page.fill("#login", RAO)
    page.fill("#email", "rao@globex.example")
    choose(c, "role", "RAO")
    grant(c, ORG, "SSL", "Code Signing")
    page.uncheck("#must_change_password")  # this story signs in as them at once
    page.fill("#password", "short")
    c.save()
    assert "at least 12 characters" in c.field_errors("password")
    c.shot("story-admin-weak-password")
    page.fill("#password", RAO_PASSWORD)
    c.save()
    assert f"Administrator '{RAO}' created." in c.flashes(), c.flashes()
    c.go("/admin/admins/new/")
    page.fill("#login", DRAO)
    page.fill("#email", "drao@globex.example")
    choose(c, "role", "DRAO")
    grant(c, f"{ORG} / {DEPT}", "SSL")
    page.uncheck("#must_change_password")
    page.fill("#password", DRAO_PASSWORD)
    c.save()
    assert f"Administrator '{DRAO}' created." in c.flashes(), c.flashes()
    c.go("/admin/admins/new/")  # the other organization's RAO, whom neither may see
    page.fill("#login", "rao.initech")
    page.fill("#email", "rao@initech.example")
    choose(c, "role", "RAO")
    grant(c, OTHER_ORG, "SSL")
    page.fill("#password", RAO_PASSWORD)
    c.save()
    assert "Administrator 'rao.initech' created." in c.flashes(), c.flashes()
    c.menu("Admins")
    scopes = dict(zip(c.table_column("Login"), c.table_column("Scopes"), strict=True))
    assert scopes == {
        ADMIN_LOGIN: "account-wide",
        RAO: f"{ORG} (SSL, Code Signing)",
        DRAO: f"{ORG} / {DEPT} (SSL)",
        "rao.initech": f"{OTHER_ORG} (SSL)",
    }
    c.shot("story-admins")
    c.sign_out()

    # --- the RAO sees their organization and nothing of the other one -----------------
    c.sign_in(RAO, RAO_PASSWORD)
    assert page.inner_text("#cw-user-menu").split() == [RAO, "RAO"]
    assert page.inner_text("[data-count='Organizations']") == "1"
    assert page.inner_text("[data-count='Departments']") == "1"
    assert page.inner_text("[data-count='Domains']") == "2"
    seen = walk_every_page(c, "rao")
    assert OTHER_ORG not in seen and OTHER_DOMAIN not in seen and "Accounting" not in seen
    assert "My Organization" not in seen
    c.menu("Settings", "Organizations")
    assert c.table_column("Name") == [ORG]
    c.menu("Settings", "Domains")
    assert c.table_column("Domain") == ["eng.globex.example", "globex.example"]
    c.menu("Admins")
    assert sorted(c.table_column("Login")) == [DRAO, RAO]
    # Reports holds what an RAO may see (the Validity Planner of their certificates), not
    # Account Activity, which is for MRAOs.
    nav = page.text_content("#admin-navbar-collapse") or ""
    assert "Validity Planner" in nav and "Account Activity" not in nav
    assert c.go("/admin/audit/").status == 403
    # An RAO's new domain waits for an MRAO.
    c.go("/admin/domain/new/")
    assert options(c, "target") == [f"{ORG} (whole organization)", f"{ORG} / {DEPT}"]
    page.fill("#name", "shop.globex.example")
    choose(c, "target", f"{ORG} (whole organization)")
    c.save()
    c.menu("Settings", "Domain Delegations")
    status = dict(zip(c.table_column("Domain"), c.table_column("Status"), strict=True))
    assert status["shop.globex.example"] == "Requested"
    by = dict(zip(c.table_column("Domain"), c.table_column("Requested by"), strict=True))
    assert by == {
        "shop.globex.example": RAO,
        "globex.example": ADMIN_LOGIN,
        "eng.globex.example": ADMIN_LOGIN,
    }
    c.shot("rao-delegations")
    c.sign_out()

    # --- the DRAO sees their department (and its organization by name) ---------------
    c.sign_in(DRAO, DRAO_PASSWORD)
    assert page.inner_text("[data-count='Departments']") == "1"
    seen = walk_every_page(c, "drao")
    assert OTHER_ORG not in seen and OTHER_DOMAIN not in seen and "Accounting" not in seen
    c.menu("Settings", "Departments")
    assert c.table_column("Name") == [DEPT]
    c.menu("Settings", "Organizations")
    assert c.table_column("Name") == [ORG]
    c.menu("Settings", "Domains")
    # Its department's domain, and the organization's (which covers its departments).
    assert c.table_column("Domain") == [
        "eng.globex.example",
        "globex.example",
        "shop.globex.example",
    ]
    c.menu("Admins")
    assert c.table_column("Login") == [DRAO]
    c.sign_out()

    # --- the MRAO approves the request and reads the audit log -------------------------
    c.sign_in(ADMIN_LOGIN, ADMIN_PASSWORD)
    assert page.inner_text("[data-count='Delegations awaiting approval']") == "1"
    c.menu("Settings", "Domain Delegations")
    page.click("a:has-text('Approve / reject')")
    page.fill("#message", "ok for the shop")
    page.click("button[name=approve]")
    assert "Delegation approved." in c.flashes()
    c.menu("Reports", "Account Activity")
    events = list(
        zip(c.table_column("Actor"), c.table_column("Action"), c.table_column("Name"), strict=True)
    )
    c.shot("story-account-activity")
    for expected in [
        (ADMIN_LOGIN, "organization.create", ORG),
        (ADMIN_LOGIN, "organization.create", OTHER_ORG),
        (ADMIN_LOGIN, "department.create", f"{ORG} / {DEPT}"),
        (ADMIN_LOGIN, "domain.create", "globex.example"),
        (ADMIN_LOGIN, "admin.create", RAO),
        (ADMIN_LOGIN, "admin.create", DRAO),
        (RAO, "signin.success", RAO),
        (RAO, "domain.create", "shop.globex.example"),
        (DRAO, "signin.success", DRAO),
        (ADMIN_LOGIN, "delegation.approve", None),
    ]:
        assert any(
            (actor, action) == expected[:2] and (expected[2] is None or name == expected[2])
            for actor, action, name in events
        ), f"{expected} not in Account Activity:\n" + "\n".join(map(str, events))
    assert not any(
        action == "organization.create" and name == ORG.upper() for _, action, name in events
    )


def walk_every_page(c: Console, who: str) -> str:
    """Open every tab, menu entry and create form the admin has; return all they saw
    (page HTML, so select options and hidden parts count too)."""
    page = c.page
    seen = []
    nav = page.locator("#admin-navbar-collapse ul.navbar-nav").first
    tops = [t.strip() for t in nav.locator(":scope > li > a").all_inner_texts()]
    assert tops[:3] == ["Dashboard", "Certificates", "Discovery"], tops
    for top in tops:
        entries = [
            e.strip()
            for e in nav.locator("li", has_text=top).locator("a.dropdown-item").all_inner_texts()
        ]
        for entry in entries or [None]:
            c.menu(top, entry)
            seen.append(page.content())
            c.shot(f"{who}-{top}-{entry or ''}")
            create = page.locator("ul.nav-tabs a:has-text('Create')")
            if create.count():
                create.click()
                page.wait_for_load_state()
                seen.append(page.content())
                c.shot(f"{who}-{top}-{entry or ''}-create")
    page.click("#cw-user-menu")
    page.click("a.dropdown-item:has-text('My Profile')")
    seen.append(page.content())
    c.shot(f"{who}-my-profile")
    return "\n".join(seen)
