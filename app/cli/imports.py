"""Command line for imports and key hygiene: cert import FILE... --org ORG [--dept D],
cert hygiene, ca weak-keys load FILE... --format debian|spki-sha256."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
from sqlalchemy import select

from app.cli.ca import ca_cli
from app.cli.certificates import cert_cli
from app.cli.context import operator, place
from app.cli.core import commit_or_fail, emit_json, fail, json_option
from app.extensions import db
from app.models import Certificate, CertificateImport, ImportResult, Job
from app.services import audit
from app.services.imports import imports, key_lists, reading, sweep
from app.services.platform import jobs


@cert_cli.command("import")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--org", "org_name", required=True, help="the organization to import into")
@click.option("--dept", "dept_name", default=None, help="a department of it")
@click.option(
    "--as", "as_login", default=None, help="act as this administrator (default: the first MRAO)"
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="write each file's fate here as CSV",
)
@json_option
def cert_import(
    paths: tuple[Path, ...],
    org_name: str,
    dept_name: str | None,
    as_login: str | None,
    csv_path: Path | None,
    as_json: bool,
) -> None:
    """Import certificates: ZIP archives, PEM or PKCS#7 bundles, single PEM/DER files.

    Runs in the foreground as the same job the console starts (its progress shows under
    System > Jobs), and prints each file's fate: imported, already known, invalid or
    skipped, with the reason. Exit status 0 when the import ran, whatever the files held.
    """
    admin = operator(as_login)
    org_id, dept_id = place(org_name, dept_name)
    limit = imports.max_upload_bytes()
    uploads = []
    total = 0
    for path in paths:
        size = path.stat().st_size
        total += size
        if total > limit:
            fail(
                f"the files hold more than {limit} bytes (CW_IMPORT_MAX_UPLOAD_BYTES); "
                "import them in several runs"
            )
        uploads.append(imports.Upload(path.name, path.read_bytes()))
    with audit.source(label="cli"):
        record = commit_or_fail(
            lambda: imports.start_import(
                actor=admin,
                organization_id=org_id,
                department_id=dept_id,
                uploads=uploads,
                send=False,
            )
        )
    assert isinstance(record, CertificateImport)
    import_id, job_id = record.id, record.job_id
    assert job_id is not None
    outcome = jobs.execute(job_id, reading.run_import_job)
    db.session.expire_all()
    job = db.session.get(Job, job_id)
    record = db.session.get(CertificateImport, import_id)
    assert job is not None and record is not None
    if outcome != "done":
        fail(f"import #{import_id} did not finish ({outcome}): {job.message}")
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as out:
            for chunk in imports.results_csv(actor=admin, import_id=import_id):
                out.write(chunk)
    results = db.session.execute(
        select(ImportResult).where(ImportResult.import_id == import_id).order_by(ImportResult.seq)
    ).scalars()
    if as_json:
        emit_json(
            {
                "import": import_id,
                "counts": record.counts,
                "results": [
                    {column: getattr(r, column) for column in imports.RESULT_COLUMNS}
                    for r in results
                ],
            }
        )
        return
    for r in results:
        where = r.file + (f"!{r.member}" if r.member else "")
        detail = f" {r.subject}" if r.subject else ""
        reason = f" ({r.reason})" if r.reason else ""
        click.echo(f"{r.outcome:9} {where}{detail}{reason}")
    click.echo(f"Import #{import_id}: {record.message}")


COMMANDS = ()  # `cert import` joins the `cert` group of app.cli.certificates


weak_keys_cli = click.Group("weak-keys", help="Lists of weak and compromised keys.")
ca_cli.add_command(weak_keys_cli)


@weak_keys_cli.command("load")
@click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--format",
    "list_format",
    type=click.Choice(sorted(key_lists.LIST_FORMATS)),
    required=True,
    help="debian: Debian's openssl-blacklist files (blacklist.RSA-2048, ...); spki-sha256: "
    "SHA-256 of the SubjectPublicKeyInfo of each compromised key, one a line",
)
@click.option("--as", "as_login", default=None, help="act as this MRAO (default: the first)")
@json_option
def weak_keys_load(
    paths: tuple[Path, ...], list_format: str, as_login: str | None, as_json: bool
) -> None:
    """Load key lists: the CA refuses these keys from now on, and the next hygiene sweep
    flags every certificate in the inventory that has one. Each file is one transaction."""
    admin = operator(as_login)
    loaded = []
    for path in paths:
        lines = path.read_text(encoding="ascii", errors="replace").splitlines()
        with audit.source(label="cli"):
            result = commit_or_fail(
                lambda lines=lines, name=path.name: key_lists.load_key_list(
                    actor=admin, lines=lines, list_format=list_format, source=name
                )
            )
        assert isinstance(result, key_lists.ListLoad)
        loaded.append({"file": str(path), **dataclasses.asdict(result)})
        if not as_json:
            click.echo(
                f"{path.name}: {result.read} fingerprints, {result.added} new "
                f"({result.total} {list_format} keys listed in all); "
                f"{result.flagged} certificates in the inventory newly flagged"
            )
    if as_json:
        emit_json(loaded)


@cert_cli.command("hygiene")
@json_option
def cert_hygiene(as_json: bool) -> None:
    """Run the hygiene sweep now, in the foreground: check every certificate the current
    checks have not looked at (keys, signatures, Debian weak keys, pkilint), as the
    scheduled sweep's workers would."""
    checked = found = 0
    while True:
        batch = (
            db.session.execute(
                select(Certificate.id)
                .where(Certificate.hygiene_version < sweep.HYGIENE_VERSION)
                .order_by(Certificate.id)
                .limit(sweep.RANGE_SIZE)
            )
            .scalars()
            .all()
        )
        if not batch:
            break
        result = commit_or_fail(lambda low=batch[0], high=batch[-1]: sweep.run_range(low, high))
        assert isinstance(result, sweep.RangeResult)
        checked += result.checked
        found += result.findings
    if as_json:
        emit_json({"checked": checked, "findings": found})
    else:
        click.echo(f"Checked {checked} certificates; {found} new findings.")
