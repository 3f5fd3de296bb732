"""Command line for imports: cert import FILE... --org ORG [--dept D]."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import select

from app.cli.core import commit_or_fail, emit_json, fail, json_option
from app.cli.pki import _operator, _place, cert_cli
from app.extensions import db
from app.models import CertificateImport, ImportResult, Job
from app.services import audit
from app.services.imports import imports
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
    admin = _operator(as_login)
    org_id, dept_id = _place(org_name, dept_name)
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
    outcome = jobs.execute(job_id, imports.run_import_job)
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


COMMANDS = ()  # `cert import` joins the `cert` group of app.cli.pki
