"""Stored uploads, read back by the import's parts.

An upload's bytes are read from the database in 1 MiB slices as zipfile asks for them
(_StoredUpload): a part needs the archive's directory and its own members, not the whole
file. A ZIP's directory is parsed once per worker process and kept for the next part of
the same upload (about half a second of CPU and 60 MB for 100,000 members, which each part
of 5,000 members paid again before): the cache holds one archive, recognised by the
upload's id and the SHA-256 of its bytes taken when it was stored, and lets it go once
unused for KEEP_SECONDS, when a part reads the archive's last members, or when the import
finishes on this process.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Final

from sqlalchemy import func, select

from app.extensions import db
from app.models import ImportUpload
from app.pki import archive

# How long an unused parsed directory is kept for the next part of its upload.
KEEP_SECONDS: Final = 60.0


class _StoredUpload(io.RawIOBase):
    """An upload's bytes read from the database in slices, as zipfile asks for them: a
    part of a ZIP needs the archive's directory and its own members, not the whole file.
    (Fetching a 50 MB upload whole for each part cost every worker some 150 MB of memory
    at the fetch, hex-encoded on the wire, and PostgreSQL the encoding, once per part.)
    The upload's data does not change while the import runs (finish() empties it last)."""

    def __init__(self, upload_id: int) -> None:
        super().__init__()
        self._id = upload_id
        self._pos = 0
        size = db.session.execute(
            select(func.length(ImportUpload.data)).where(ImportUpload.id == upload_id)
        ).scalar_one()
        self._size = int(size or 0)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), self._size - self._pos)
        if wanted <= 0:
            return 0
        chunk = _slice(self._id, self._pos + 1, wanted)
        view = memoryview(buffer).cast("B")
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def _slice(upload_id: int, start: int, length: int) -> bytes:
    """Bytes start..start+length-1 (1-based) of an upload; on PostgreSQL in binary format
    (a text-format bytea doubles on the wire and is hex-encoded and decoded)."""
    connection = db.session.connection()
    driver = connection.connection.driver_connection
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        with driver.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT substr(data, %s, %s) FROM import_uploads WHERE id = %s",
                (start, length, upload_id),
            )
            row = cursor.fetchone()
        return bytes(row[0]) if row else b""
    chunk = db.session.execute(
        select(func.substr(ImportUpload.data, start, length)).where(ImportUpload.id == upload_id)
    ).scalar()
    return bytes(chunk or b"")


def stored_upload(upload_id: int) -> IO[bytes]:
    """A seekable reader of a stored upload that fetches 1 MiB slices as they are read."""
    return io.BufferedReader(_StoredUpload(upload_id), buffer_size=1 << 20)


@dataclass
class _Kept:
    key: tuple[int, str, archive.Limits]
    directory: archive.ZipDirectory
    used: float


_lock = threading.Lock()
_kept: _Kept | None = None


def _open_directory(upload_id: int, name: str, bounds: archive.Limits) -> archive.ZipDirectory:
    """The upload's ZIP directory, parsed now or kept from an earlier part.

    Raises:
        archive.ArchiveRefused: the archive as a whole breaks a limit or is not readable.
    """
    global _kept
    digest = db.session.execute(
        select(ImportUpload.sha256).where(ImportUpload.id == upload_id)
    ).scalar_one()
    key = (upload_id, digest, bounds)
    with _lock:
        now = time.monotonic()
        if _kept is not None and (_kept.key != key or now - _kept.used > KEEP_SECONDS):
            _kept = None  # the archive it held is closed when its last reader is done
        if _kept is not None:
            _kept.used = now
            return _kept.directory
        directory = archive.ZipDirectory(archive.label(name), stored_upload(upload_id), bounds)
        if digest:  # uploads stored before migration 0030 have no digest to recognise them
            _kept = _Kept(key, directory, now)
        return directory


def forget(upload_ids: list[int]) -> None:
    """Let go of a kept directory of these uploads (their import is done)."""
    global _kept
    with _lock:
        if _kept is not None and _kept.key[0] in upload_ids:
            _kept = None


def _is_zip(upload_id: int) -> bool:
    head = _slice(upload_id, 1, 4)
    return archive.is_zip(head)


def plan(
    upload_id: int, name: str, bounds: archive.Limits, *, max_members: int, max_bytes: int
) -> list[tuple[int, int]]:
    """The upload's parts, (first, last + 1) member ranges (archive.plan_parts): one part
    for anything but a ZIP that passes the archive's limits (reading it says why)."""
    if not _is_zip(upload_id):
        return [(0, 1)]
    try:
        directory = _open_directory(upload_id, name, bounds)
    except archive.ArchiveRefused:
        return [(0, 1)]
    return archive.cut_parts(directory.sizes(), max_members=max_members, max_bytes=max_bytes)


def read(
    upload_id: int, name: str, bounds: archive.Limits, members: tuple[int, int]
) -> Iterator[archive.FileResult]:
    """The results of members first..last-1 of the upload (archive.read_upload).

    Raises:
        archive.ArchiveRefused: the archive as a whole breaks a limit or is not readable.
    """
    if not _is_zip(upload_id):
        yield from archive.read_upload(name, stored_upload(upload_id), bounds, members)
        return
    directory = _open_directory(upload_id, name, bounds)
    yield from directory.read(members)
    if members[1] >= len(directory.sizes()):
        forget([upload_id])
