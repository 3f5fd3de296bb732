"""Discovery > Agents and the Agent field of a task, through HTTP and the command line:
only an MRAO sees agents; creating one shows its private key once and stores only the
public key; bad names and allow-lists are refused at their fields; a task range outside the
agent's allow-list is refused with a clear message; a disabled agent cannot be chosen; the
agent command refuses a bad key file or allow-list before it connects anywhere."""

from __future__ import annotations

import re

from sqlalchemy import select

from app.extensions import db
from app.models import AuditEvent, DiscoveryTask, Role, ScanAgent
from app.scan import agentwire
from app.services.discovery import agents, tasks
from app.services.scope import SYSTEM
from tests.conftest import csrf_token, login
from tests.factories import PASSWORD, make_admin, make_org


def post(client, url, data, page=None):
    token = csrf_token(client, page or url)
    return client.post(url, data={**data, "csrf_token": token}, follow_redirects=True)


def feedback(resp) -> list[str]:
    return re.findall(r'<div class="invalid-feedback">([^<]*)</div>', resp.get_data(as_text=True))


def test_mrao_creates_an_agent_sees_its_key_once_and_disables_it(app, client):
    make_admin("boss")
    assert login(client, "boss", PASSWORD).status_code == 302
    bad = post(client, "/admin/scan_agents/new/", {"name": "DMZ!", "allowed_ranges": "10.0.0.300"})
    errors = feedback(bad)
    assert any("lowercase letters" in e for e in errors), errors
    assert any("10.0.0.300" in e for e in errors), errors
    assert db.session.execute(select(ScanAgent)).first() is None

    page = post(
        client,
        "/admin/scan_agents/new/",
        {"name": "dmz", "allowed_ranges": "10.20.0.0/16\n192.168.7.0/24", "description": ""},
    ).get_data(as_text=True)
    pem = re.search(r'<textarea id="cw-agent-key"[^>]*>([^<]*)</textarea>', page, re.S)
    assert pem is not None and "BEGIN PRIVATE KEY" in pem.group(1)
    agent = db.session.execute(select(ScanAgent)).scalar_one()
    key = agentwire.load_private_key(pem.group(1).encode())
    # The database holds the public half only, and it matches the key shown.
    assert agent.public_key == agentwire.public_key_text(key.public_key())
    assert "PRIVATE" not in agent.public_key
    assert agentwire.key_fingerprint(agent.public_key) in page
    assert "--allow 10.20.0.0/16 --allow 192.168.7.0/24" in page
    # Never again: the list and details show the fingerprint, not the key.
    details = client.get(f"/admin/scan_agents/details/?id={agent.id}").get_data(as_text=True)
    assert "PRIVATE KEY" not in details and agentwire.key_fingerprint(agent.public_key) in details
    listing = client.get("/admin/scan_agents/").get_data(as_text=True)
    assert "offline (never seen)" in listing and "PRIVATE KEY" not in listing

    taken = post(client, "/admin/scan_agents/new/", {"name": "dmz", "allowed_ranges": "10.0.0.1"})
    assert "An agent named &#39;dmz&#39; already exists." in feedback(taken)

    done = post(client, "/admin/scan_agents/disable/", {"id": str(agent.id)}, "/admin/scan_agents/")
    assert "Agent &#39;dmz&#39; disabled." in done.get_data(as_text=True)
    db.session.expire_all()
    assert agent.enabled is False
    actions = [e.action for e in db.session.execute(select(AuditEvent)).scalars()]
    assert "agent.create" in actions and "agent.disable" in actions


def test_an_allow_list_entry_wider_than_a_network_is_refused(app, client):
    make_admin("boss")
    assert login(client, "boss", PASSWORD).status_code == 302
    for wide in ("0.0.0.0/0", "10.0.0.0/7", "::/0", "2001:db8::/31", "1.0.0.0-3.0.0.0"):
        page = post(client, "/admin/scan_agents/new/", {"name": "wide", "allowed_ranges": wide})
        errors = feedback(page)
        assert any(
            f"&#39;{wide}&#39; is wider than an agent may be allowed" in e for e in errors
        ), (
            wide,
            errors,
        )
    assert db.session.execute(select(ScanAgent)).first() is None
    # The widest accepted: a /8 of IPv4 and a /32 of IPv6.
    created = agents.create_agent(
        actor=SYSTEM, name="wide", allowed_ranges="10.0.0.0/8 2001:db8::/32"
    )
    assert created.agent.allowed_ranges == "10.0.0.0/8\n2001:db8::/32"


def test_mrao_sets_an_agents_caps_validated_and_audited(app, client):
    make_admin("boss")
    assert login(client, "boss", PASSWORD).status_code == 302
    created = agents.create_agent(actor=SYSTEM, name="wan", allowed_ranges="10.30.0.0/16")
    db.session.commit()
    agent_id = created.agent.id
    url = f"/admin/scan_agents/limits/?id={agent_id}"
    bad = post(client, url, {"max_rate": "fast", "max_in_flight": "-3"})
    errors = feedback(bad)
    assert any(
        "a number between 0 (no cap) and 1,000,000; &#39;fast&#39; is not" in e for e in errors
    ), errors
    assert any(
        "whole number between 0 (no cap) and 100,000; &#39;-3&#39; is not" in e for e in errors
    ), errors
    db.session.expire_all()
    assert (created.agent.max_rate, created.agent.max_in_flight) == (0, 0)

    # The host reported its own ceilings: what is in force is the lower of the two.
    agents.record_heartbeat(
        created.agent, host="h", version="v", in_flight=0, capacity=2, ceilings=(50.0, 0)
    )
    db.session.commit()
    done = post(client, url, {"max_rate": "200", "max_in_flight": "64"})
    page = done.get_data(as_text=True)
    assert "caps saved; in force from its next shard: 50 /s, 64 in flight." in page, page
    db.session.expire_all()
    assert (created.agent.max_rate, created.agent.max_in_flight) == (200.0, 64)
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "agent.limits")
    ).scalar_one()
    assert event.before == {"max_rate": 0.0, "max_in_flight": 0}
    assert event.after == {"max_rate": 200.0, "max_in_flight": 64}
    listing = client.get("/admin/scan_agents/").get_data(as_text=True)
    assert "console: 200 /s, 64 in flight; host ceiling: 50 /s, no cap" in listing

    # The caps travel with every shard sent to the agent.
    from app.services.discovery import agentruns

    assert agentruns.agent_limits(created.agent) == {"rate": 200.0, "in_flight": 64}

    bad_create = post(
        client,
        "/admin/scan_agents/new/",
        {"name": "wan2", "allowed_ranges": "10.31.0.0/16", "max_rate": "2e9"},
    )
    assert any("1,000,000" in e for e in feedback(bad_create))


def test_an_rao_sees_no_agents(app, client):
    org = make_org("Acme")
    make_admin("rao", Role.RAO, org=org)
    assert login(client, "rao", PASSWORD).status_code == 302
    assert client.get("/admin/scan_agents/").status_code == 403
    assert client.get("/admin/scan_agents/new/").status_code == 403
    assert client.get("/admin/scan_agents/limits/?id=1").status_code == 403


def test_task_ranges_must_stay_in_the_agents_allow_list(app):
    boss = make_admin("boss")
    agents.create_agent(actor=boss, name="dmz", allowed_ranges="10.20.0.0/16")
    db.session.commit()

    def task(ranges: str, agent: str = "dmz") -> tasks.TaskData:
        return tasks.TaskData(name=f"T {ranges}", ranges=ranges, ports="443", agent=agent)

    try:
        tasks.create_task(actor=boss, data=task("10.20.1.0/24\n10.9.0.0/24"))
    except tasks.ValidationFailed as exc:
        assert exc.errors["agent"] == [
            "10.9.0.0/24 is outside the allow-list of agent 'dmz' (10.20.0.0/16)."
        ]
    else:
        raise AssertionError("a range outside the allow-list was accepted")
    db.session.rollback()
    saved = tasks.create_task(actor=boss, data=task("10.20.1.0/24"))
    db.session.commit()
    assert saved.agent == "dmz"
    agent = agents.by_name("dmz")
    assert agent is not None
    agents.set_enabled(actor=boss, agent_id=agent.id, enabled=False)
    db.session.commit()
    try:
        tasks.create_task(actor=boss, data=task("10.20.2.0/24"))
    except tasks.ValidationFailed as exc:
        assert exc.errors["agent"] == ["Agent 'dmz' is disabled."]
    else:
        raise AssertionError("a disabled agent was accepted")
    db.session.rollback()
    # A run of a task whose agent was disabled since is refused too.
    from app.services.discovery import runs

    try:
        runs.start_run(actor=boss, task_id=saved.id)
    except tasks.ValidationFailed as exc:
        assert exc.errors["agent"] == ["Agent 'dmz' is disabled."]
    else:
        raise AssertionError("a run of a disabled agent started")
    db.session.rollback()
    assert db.session.execute(select(DiscoveryTask.agent)).scalars().all() == ["dmz"]


def test_the_agent_command_refuses_bad_input_before_connecting(app, tmp_path):
    runner = app.test_cli_runner()
    key = tmp_path / "dmz.key"
    made = runner.invoke(
        args=["agent", "create", "dmz", "--allow", "10.20.0.0/16", "--key-out", str(key)]
    )
    assert made.exit_code == 0, made.output
    assert key.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(
        args=["agent", "create", "dmz2", "--allow", "10.0.0.1", "--key-out", str(key)]
    )
    assert again.exit_code == 2 and "exists" in again.output
    bad_name = runner.invoke(
        args=[
            "agent",
            "create",
            "Bad Name",
            "--allow",
            "10.0.0.1",
            "--key-out",
            str(tmp_path / "x"),
        ]
    )
    assert bad_name.exit_code == 2 and "lowercase letters" in bad_name.output
    capped = runner.invoke(
        args=["agent", "limits", "dmz", "--max-rate", "150", "--max-in-flight", "32"]
    )
    assert capped.exit_code == 0, capped.output
    assert "caps 150 /s, 32 in flight; in force" in capped.output
    # Audited as the command line did it, like every command.
    actors = {
        e.action: e.actor
        for e in db.session.execute(
            select(AuditEvent).where(AuditEvent.action.in_(["agent.create", "agent.limits"]))
        ).scalars()
    }
    assert actors == {"agent.create": "cli", "agent.limits": "cli"}
    wrong = runner.invoke(
        args=["agent", "limits", "dmz", "--max-rate", "x", "--max-in-flight", "1"]
    )
    assert wrong.exit_code == 2 and "&#39;x&#39; is not" not in wrong.output
    assert "'x' is not" in wrong.output, wrong.output
    assert (
        runner.invoke(
            args=["agent", "limits", "nope", "--max-rate", "1", "--max-in-flight", "1"]
        ).exit_code
        == 2
    )
    args = ["agent", "run", "dmz", "--broker", "redis://127.0.0.1:1/0", "--key", str(key)]
    bad_allow = runner.invoke(args=[*args, "--allow", "10.20.0.0/33"])
    assert bad_allow.exit_code == 2 and "10.20.0.0/33" in bad_allow.output
    (tmp_path / "junk.key").write_text("not a key")
    junk = runner.invoke(
        args=[
            "agent",
            "run",
            "dmz",
            "--broker",
            "redis://x",
            "--key",
            str(tmp_path / "junk.key"),
            "--allow",
            "10.0.0.0/8",
        ]
    )
    assert junk.exit_code == 2 and "PEM private key" in junk.output
    bad_broker = runner.invoke(
        args=[*args[:3], "--broker", "http://x", "--key", str(key), "--allow", "10.0.0.0/8"]
    )
    assert bad_broker.exit_code == 2 and "redis:// or amqp://" in bad_broker.output


def test_task_csv_import_and_export_carry_the_agent(app, client):
    import csv
    import io

    import pytest

    make_admin("boss")
    agents.create_agent(actor=SYSTEM, name="dmz", allowed_ranges="10.20.0.0/16")
    old = agents.create_agent(actor=SYSTEM, name="old", allowed_ranges="10.20.0.0/16")
    agents.set_enabled(actor=SYSTEM, agent_id=old.agent.id, enabled=False)
    db.session.commit()
    text = (
        "name,ranges,ports,agent\n"
        "Zone,10.20.1.0/24;10.20.9.5,443;8443,dmz\n"
        "Outside,10.20.2.0/24;10.9.0.0/24,443,dmz\n"
        "Ghost,10.20.2.0/24,443,ghost\n"
        "Old,10.20.3.0/24,443,old\n"
        "Plain,10.1.0.0/24,443,\n"
        "Lower,10.1.1.0/24,443,auto\n"
    )
    with pytest.raises(tasks.CsvImportError) as caught:
        tasks.import_csv(actor=SYSTEM, text=text)
    db.session.rollback()
    assert caught.value.lines == [
        "line 3: agent: 10.9.0.0/24 is outside the allow-list of agent 'dmz' (10.20.0.0/16).",
        "line 4: agent: No agent named 'ghost'.",
        "line 5: agent: Agent 'old' is disabled.",
    ]
    assert db.session.execute(select(DiscoveryTask)).first() is None

    good = "\n".join(line for i, line in enumerate(text.splitlines()) if i not in (2, 3, 4))
    # Through the console's Import page, as an MRAO.
    assert login(client, "boss", PASSWORD).status_code == 302
    page = post(client, "/admin/discovery_tasks/import/", {"text": good}).get_data(as_text=True)
    assert "Imported 3 task(s): Zone, Plain, Lower." in page, page
    made = {t.name: t.agent for t in db.session.execute(select(DiscoveryTask)).scalars()}
    assert made == {"Zone": "dmz", "Plain": agents.AUTO, "Lower": agents.AUTO}
    bad = post(client, "/admin/discovery_tasks/import/", {"text": text.replace("Zone", "Z2")})
    assert "line 4: agent: No agent named &#39;ghost&#39;." in bad.get_data(as_text=True)

    # The export is the import's format: the same header, the agent by name.
    exported = client.get("/admin/discovery_tasks/export/csv/")
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert list(rows[0]) == list(tasks.CSV_COLUMNS)
    zone = next(r for r in rows if r["name"] == "Zone")
    assert zone["agent"] == "dmz" and zone["ranges"] == "10.20.1.0/24;10.20.9.5"
    assert zone["ports"] == "443,8443" and zone["organization"] == ""
    assert {r["name"]: r["agent"] for r in rows} == {
        "Zone": "dmz",
        "Plain": "Auto",
        "Lower": "Auto",
    }
    # ...and imports back (renamed, since names are unique), agent and all.
    again = exported.get_data(as_text=True).replace("Zone", "Zone copy")
    again = "\n".join(
        line for line in again.splitlines() if not line.startswith(("Plain", "Lower"))
    )
    created = tasks.import_csv(actor=SYSTEM, text=again)
    db.session.commit()
    assert [(t.name, t.agent, t.ranges, t.ports) for t in created] == [
        ("Zone copy", "dmz", "10.20.1.0/24\n10.20.9.5", "443,8443")
    ]
