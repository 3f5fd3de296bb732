"""Issue 16's import benchmark: a ZIP of distinct certificates into PostgreSQL, against
references measured in the same run.

    python -m bench.import [--count N] [--smoke] [--json FILE]

(a) raw: unzip + `cryptography` parse + the inventory's fields of every member, in two
    processes (both cores);
(b) bulk insert: the same rows straight into `certificates` (COPY through app.services.bulk);
(c) end to end: start_import() as the console calls it, read by `dramatiq` worker processes
    (the import's own job and its part jobs, app.services.imports.reading) over a private
    Redis into PostgreSQL, once with 1 worker process and once with 2, from an empty
    inventory each time, with the largest resident-memory growth of any worker process.

The ZIP is generated once per count and cached under ~/.cache/certwright-bench/. Targets
(issue 16): (c) with 2 workers >= 0.35 x (a); memory growth <= 200 MB; 1 -> 2 workers
>= 1.6x.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import resource
import secrets
import sys
import threading
import time
import zipfile
from multiprocessing import Pool
from pathlib import Path
from typing import Any

from bench.harness import (
    POSTGRES,
    REPO,
    app_env,
    log,
    machine,
    process_tree,
    start_dramatiq,
    start_redis,
    stop,
    wait_for_workers,
)

CACHE = Path.home() / ".cache" / "certwright-bench"


def make_zip(count: int) -> Path:
    """A ZIP of ``count`` distinct leaf certificates (DER, `.cer`), each with its own key,
    signed by one EC CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    path = CACHE / f"import-{count}-v2.zip"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    log(f"generating {count} certificates into {path} (once)")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Import CA")])
    now = dt.datetime.now(dt.UTC)
    temp = path.with_suffix(".tmp")
    with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for i in range(count):
            name = f"host{i}.bench.example"
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_name)
                .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=90))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
                .add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
                )
                .sign(ca_key, hashes.SHA256())
            )
            archive.writestr(f"certs/{i // 1000}/{name}.cer", cert.public_bytes(Encoding.DER))
    temp.rename(path)
    return path


def _parse_range(args: tuple[str, int, int]) -> int:
    from cryptography import x509

    from app.pki.info import describe_certificate

    path, start, stop = args
    done = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist()[start:stop]:
            describe_certificate(x509.load_der_x509_certificate(archive.read(info)))
            done += 1
    return done


def raw_rate(path: Path, count: int) -> float:
    """(a) unzip + parse + fields of every member, on two processes."""
    half = count // 2
    started = time.perf_counter()
    with Pool(2) as pool:
        done = sum(pool.map(_parse_range, [(str(path), 0, half), (str(path), half, count)]))
    elapsed = time.perf_counter() - started
    assert done == count
    return count / elapsed


class RssPeak:
    """The process's resident memory, sampled every 50 ms while a block runs."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def now() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> RssPeak:
        self.start = self.now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.now())


def create_database() -> tuple[str, str]:
    import psycopg

    name = f"cw_bench_import_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(count: int, work: Path) -> dict[str, Any]:
    path = make_zip(count)
    data = path.read_bytes()
    log(f"(a) raw unzip + parse of {count} members on two processes")
    raw = raw_rate(path, count)
    log(f"    {raw:,.0f} certificates/s")
    name, url = create_database()
    redis_server, redis_url = start_redis(work)
    os.environ.update(
        app_env(
            work,
            DATABASE_URL=url,
            BROKER_URL=redis_url,
            CW_IMPORT_MAX_UPLOAD_BYTES=str(1 << 31),
        )
    )
    try:
        from sqlalchemy import text

        from app import create_app
        from app.config import Config
        from app.extensions import db
        from app.models import Certificate
        from app.models.types import utcnow
        from app.pki.archive import Limits, read_upload
        from app.services import bulk
        from app.services.imports import reading
        from app.services.scope import SYSTEM
        from app.services.structure import orgs
        from bench.harness import migrate

        app = create_app(Config())
        with app.app_context():
            migrate()
            org = orgs.create_org(actor=SYSTEM, data=orgs.OrgData(name="Bench", country="DE"))
            db.session.commit()
            log("(b) bulk insert of the same rows")
            now = utcnow()
            rows = [
                reading.certificate_row(parsed, (org.id, None), now)
                for result in read_upload("b.zip", io.BytesIO(data), Limits())
                for parsed in (result.content.certificates if result.content else ())
            ]
            started = time.perf_counter()
            for at in range(0, len(rows), 5000):
                bulk.insert_rows(Certificate.__table__, rows[at : at + 5000])
            db.session.commit()
            bulk_rate = len(rows) / (time.perf_counter() - started)
            del rows
            # TRUNCATE, not DELETE: a DELETE checks every table referring to certificates
            # once per row.
            db.session.execute(text("TRUNCATE certificates CASCADE"))
            db.session.commit()
            log(f"    {bulk_rate:,.0f} rows/s")
            org_id = org.id
            db.session.remove()
            db.engine.dispose()
            runs = {
                w: end_to_end_run(app, w, count, path, data, org_id, work, database=name)
                for w in (1, 2)
            }
    finally:
        drop_database(name)
        if redis_server is not None:
            redis_server.terminate()
            redis_server.wait(10)
    end_to_end = runs[2]["per_s"]
    growth = max(run["memory_growth_bytes"] for run in runs.values())
    speedup = runs[2]["per_s"] / runs[1]["per_s"]
    ratio = end_to_end / raw
    return {
        "machine": machine(),
        "count": count,
        "zip_bytes": len(data),
        "raw_per_s": raw,
        "bulk_insert_per_s": bulk_rate,
        "end_to_end_per_s": end_to_end,
        "end_to_end_1_worker_per_s": runs[1]["per_s"],
        "speedup_1_to_2": speedup,
        "ratio_to_raw": ratio,
        "memory_growth_bytes": growth,
        "runs": runs,
        "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "targets": {
            "end_to_end >= 0.35 x raw": ratio >= 0.35,
            "memory growth <= 200 MB": growth <= 200e6,
            "1 -> 2 workers >= 1.6x": speedup >= 1.6,
        },
    }


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def end_to_end_run(
    app: Any,
    workers: int,
    count: int,
    path: Path,
    data: bytes,
    org_id: int,
    work: Path,
    *,
    database: str,
) -> dict[str, Any]:
    """One import read by ``workers`` dramatiq processes (one thread each) from an empty
    inventory; the rate from start_import to the import's finish, each worker process's
    largest resident-memory growth over its size once started, and the CPU per certificate
    of the workers and of PostgreSQL (what bounds the speed-up on two cores: with the
    workers' w and PostgreSQL's p milliseconds, two cores give at most 2w / (w + p))."""
    from sqlalchemy import func, select, text

    from app.extensions import db
    from app.models import Certificate, CertificateImport, ImportResult
    from app.services.imports import imports
    from app.services.scope import SYSTEM
    from bench.api import CpuMeter

    with app.app_context():
        db.session.execute(
            text("TRUNCATE certificates, certificate_imports, jobs RESTART IDENTITY CASCADE")
        )
        db.session.commit()
        log(f"(c) end to end with {workers} worker process{'es' if workers > 1 else ''}")
        proc = start_dramatiq(workers, 1, work / f"workers-{workers}.log", queue="default")
        try:
            wait_for_workers(workers, proc)
            pids = [p for p in process_tree(proc.pid) if p != proc.pid]
            start_rss = {pid: _rss(pid) for pid in pids}
            peak = dict(start_rss)
            meter = CpuMeter({"workers": proc.pid}, database=database)
            started = time.perf_counter()
            record = imports.start_import(
                actor=SYSTEM,
                organization_id=org_id,
                department_id=None,
                uploads=[imports.Upload(path.name, data)],
            )
            db.session.commit()
            import_id = record.id
            while True:
                finished = db.session.scalar(
                    select(CertificateImport.finished_at).where(CertificateImport.id == import_id)
                )
                db.session.commit()
                for pid in pids:
                    peak[pid] = max(peak[pid], _rss(pid))
                if finished is not None:
                    break
                if proc.poll() is not None:
                    raise RuntimeError("the workers exited during the import")
                time.sleep(0.05)
            elapsed = time.perf_counter() - started
            cpu = meter.stop(count)
        finally:
            stop(proc)
        stored = db.session.scalar(select(func.count(Certificate.id)))
        results = db.session.scalar(select(func.count(ImportResult.id)))
        counts = db.session.scalar(select(CertificateImport.counts))
        assert stored == count and results == count, (stored, results)
        assert counts["imported"] == count, counts
        growth = max(peak[pid] - start_rss[pid] for pid in pids)
        tail = _tail_seconds(import_id)
        log(
            f"    {count / elapsed:,.0f} certificates/s, memory growth {growth / 1e6:,.0f} MB, "
            f"CPU per certificate: workers {cpu['cpu_ms_workers']} ms, "
            f"PostgreSQL {cpu.get('cpu_ms_postgres', 0)} ms; {tail[0]} parts, the last begun "
            f"{tail[1]:.1f} s before the end"
        )
        db.session.remove()
        db.engine.dispose()
    return {
        "per_s": count / elapsed,
        "seconds": elapsed,
        "memory_growth_bytes": growth,
        "parts": tail[0],
        "tail_seconds": tail[1],
        **cpu,
    }


def _tail_seconds(import_id: int) -> tuple[int, float]:
    """How many parts the import had, and the seconds from the start of its last part
    (by start time) to the import's finish: the stretch in which the workers cannot all be
    busy (the import's own job links issuers and sums up after the parts)."""
    from sqlalchemy import select

    from app.extensions import db
    from app.models import CertificateImport, Job
    from app.services.imports import reading

    finished = db.session.scalar(
        select(CertificateImport.finished_at).where(CertificateImport.id == import_id)
    )
    starts = [
        started
        for started, payload in db.session.execute(
            select(Job.started_at, Job.payload).where(Job.kind == reading.PART_KIND)
        )
        if (payload or {}).get("import_id") == import_id and started is not None
    ]
    db.session.commit()
    if not starts or finished is None:
        return 1, 0.0
    return len(starts) + 1, (finished - max(starts)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="200 certificates: every part runs")
    parser.add_argument("--json", type=Path, default=None)
    options = parser.parse_args()
    count = 200 if options.smoke else options.count
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"cw-bench-import-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    figures = run(count, work)
    for target, met in figures["targets"].items():
        verdict = "not measured" if met is None else ("PASS" if met else "FAIL")
        print(f"{verdict:12} {target}")
    print(
        f"raw {figures['raw_per_s']:,.0f}/s, bulk insert {figures['bulk_insert_per_s']:,.0f}/s, "
        f"end to end {figures['end_to_end_per_s']:,.0f}/s "
        f"({figures['ratio_to_raw']:.2f}x raw; 1 worker "
        f"{figures['end_to_end_1_worker_per_s']:,.0f}/s, {figures['speedup_1_to_2']:.2f}x), "
        "memory growth "
        f"{figures['memory_growth_bytes'] / 1e6:,.0f} MB"
    )
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2, default=str))
    sys.path.insert(0, str(REPO))


if __name__ == "__main__":
    main()
