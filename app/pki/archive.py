"""Reading uploaded files for an import: a ZIP archive's members streamed one at a time
under explicit limits, or a single file; no I/O beyond the file object given.

Nothing is ever extracted to disk and a member name is only a label: it never becomes a
path. An archive that is too big or has too many members is refused before any member is
read; a member that is hostile (a path-like name, a symlink, encrypted, a nested archive,
a size it lies about, a compression ratio past the bound) is skipped with a reason, and
the rest of the archive is still read. Memory stays bounded by the per-member limit
whatever the archive declares: zipfile inflates in chunks and never past the declared
size, and a declared size that differs from the data fails the member's CRC or length.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Final

from app.pki.bundles import FileContent, read_file
from app.pki.errors import PkiError

ZIP_MAGIC: Final = (b"PK\x03\x04", b"PK\x05\x06")
_NESTED_SUFFIXES: Final = (
    ".zip", ".jar", ".war", ".apk", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z", ".rar",
)  # fmt: skip
_CHUNK: Final = 64 * 1024
_UNSAFE_CHARACTERS: Final = re.compile(r"[\x00-\x1f\x7f]")
_DRIVE: Final = re.compile(r"^[A-Za-z]:")
_METHODS: Final = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_S_IFMT: Final = 0o170000
_S_IFLNK: Final = 0o120000


class ArchiveRefused(PkiError):
    """The whole archive is refused before any member is read (too many members, too large,
    not a readable ZIP); the message says which limit and how to change it."""


@dataclass(frozen=True)
class Limits:
    """What one upload may hold. Defaults match app/settings.py (CW_IMPORT_*)."""

    max_members: int = 200_000
    max_total_bytes: int = 1024 * 1024 * 1024  # inflated, over all members
    max_member_bytes: int = 4 * 1024 * 1024
    max_ratio: int = 100  # inflated size / compressed size of one member


@dataclass(frozen=True)
class FileResult:
    """One file's fate: its content (certificates, notes, or the error that nothing in it
    was a certificate), or why it was skipped unread. ``member`` is "" for a single file."""

    file: str
    member: str
    content: FileContent | None = None
    skipped: str = ""


def label(name: str, limit: int = 255) -> str:
    """A name fit to show and to put in a CSV: control characters replaced, length bounded."""
    shown = _UNSAFE_CHARACTERS.sub("?", name)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def is_zip(head: bytes) -> bool:
    return head.startswith(ZIP_MAGIC)


def read_upload(
    name: str, stream: IO[bytes], limits: Limits, members: tuple[int, int] | None = None
) -> Iterator[FileResult]:
    """The results of one uploaded file, member by member for a ZIP; with ``members``
    (first, last + 1), only those members of a ZIP (by their place among its files, as
    plan_parts() counts them; the archive's own limits are checked whole all the same).

    ``stream`` must be seekable (a ZIP's directory is at its end).

    Raises:
        ArchiveRefused: the archive as a whole breaks a limit or is not a readable ZIP.
    """
    shown = label(name)
    head = stream.read(4)
    stream.seek(0)
    if not is_zip(head):
        if members is not None and members[0] > 0:
            return
        data = stream.read(limits.max_member_bytes + 1)
        if len(data) > limits.max_member_bytes:
            yield FileResult(
                shown,
                "",
                skipped=f"larger than {limits.max_member_bytes} bytes (CW_IMPORT_MAX_FILE_BYTES)",
            )
            return
        yield FileResult(shown, "", content=read_file(data))
        return
    yield from _read_zip(shown, stream, limits, members)


def plan_parts(stream: IO[bytes], *, max_members: int, max_bytes: int) -> list[tuple[int, int]]:
    """Cut an upload into parts that separate workers can read: (first, last + 1) member
    ranges of at most ``max_members`` members and ``max_bytes`` declared inflated bytes
    (a single larger member is a part of its own); one part for anything but a readable
    ZIP (read_upload() then says what is wrong with it)."""
    head = stream.read(4)
    stream.seek(0)
    if not is_zip(head):
        return [(0, 1)]
    try:
        with zipfile.ZipFile(stream) as archive:
            sizes = [info.file_size for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return [(0, 1)]
    finally:
        stream.seek(0)
    return cut_parts(sizes, max_members=max_members, max_bytes=max_bytes)


def cut_parts(sizes: list[int], *, max_members: int, max_bytes: int) -> list[tuple[int, int]]:
    """(first, last + 1) ranges of members, by their declared inflated ``sizes`` in order,
    of at most ``max_members`` members and ``max_bytes`` bytes each (a single larger member
    is a part of its own); one part for no member at all."""
    parts: list[tuple[int, int]] = []
    first, weight = 0, 0
    for index, size in enumerate(sizes):
        if index > first and (index - first >= max_members or weight + size > max_bytes):
            parts.append((first, index))
            first, weight = index, 0
        weight += size
    parts.append((first, max(len(sizes), first + 1)))
    return parts


def declared_member_count(stream: IO[bytes]) -> int | None:
    """How many members the ZIP's end-of-central-directory record declares (ZIP64 too),
    read from the file's tail before zipfile builds its list of members; None if absent.

    APPNOTE.TXT §4.3.16 (EOCD: total entries at offset 10) and §4.3.14-15 (ZIP64)."""
    stream.seek(0, io.SEEK_END)
    size = stream.tell()
    tail_length = min(size, 22 + 65535 + 20)
    stream.seek(size - tail_length)
    tail = stream.read(tail_length)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        return None
    (total,) = struct.unpack("<H", tail[at + 10 : at + 12])
    if total != 0xFFFF or at < 20 or tail[at - 20 : at - 16] != b"PK\x06\x07":
        return int(total)
    (offset,) = struct.unpack("<Q", tail[at - 12 : at - 4])
    if offset >= size:
        return None
    stream.seek(offset)
    record = stream.read(56)
    if len(record) < 56 or not record.startswith(b"PK\x06\x06"):
        return None
    (total64,) = struct.unpack("<Q", record[32:40])
    return int(total64)


def _read_zip(
    name: str, stream: IO[bytes], limits: Limits, wanted: tuple[int, int] | None
) -> Iterator[FileResult]:
    directory = ZipDirectory(name, stream, limits)
    try:
        yield from directory.read(wanted)
    finally:
        directory.close()


class ZipDirectory:
    """A ZIP archive's directory, read and checked against the limits once, so that the
    parts of an import read on one process can share it: parsing the directory of 100,000
    members costs about half a second of CPU and 60 MB, which every part of a few thousand members
    would otherwise pay again. Reading members from several threads at once is safe
    (zipfile serialises its reads of the stream).

    Raises (on creation):
        ArchiveRefused: the archive as a whole breaks a limit or is not a readable ZIP.
    """

    def __init__(self, name: str, stream: IO[bytes], limits: Limits) -> None:
        declared = declared_member_count(stream)
        stream.seek(0)
        if declared is not None and declared > limits.max_members:
            raise ArchiveRefused(
                f"{name}: the archive has {declared} members, more than the limit of "
                f"{limits.max_members} (CW_IMPORT_MAX_MEMBERS); split it"
            )
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
            raise ArchiveRefused(f"{name}: not a readable ZIP archive ({exc})") from None
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > limits.max_members:
            archive.close()
            raise ArchiveRefused(
                f"{name}: the archive has {len(members)} members, more than the limit of "
                f"{limits.max_members} (CW_IMPORT_MAX_MEMBERS); split it"
            )
        # Members skipped unread do not count towards the total.
        refusals = [_refusal(info, limits) for info in members]
        declared_total = sum(
            info.file_size for info, refused in zip(members, refusals, strict=True) if not refused
        )
        if declared_total > limits.max_total_bytes:
            archive.close()
            raise ArchiveRefused(
                f"{name}: the archive inflates to {declared_total} bytes, more than the "
                f"limit of {limits.max_total_bytes} (CW_IMPORT_MAX_TOTAL_BYTES)"
            )
        self.name = name
        self.limits = limits
        self._archive = archive
        self._members = members
        self._refusals = refusals

    def sizes(self) -> list[int]:
        """The members' declared inflated sizes, in order (what plan_parts() cuts by)."""
        return [info.file_size for info in self._members]

    def read(self, wanted: tuple[int, int] | None = None) -> Iterator[FileResult]:
        """The results of the members first..last-1 (all without ``wanted``)."""
        name, limits = self.name, self.limits
        first, last = wanted if wanted is not None else (0, len(self._members))
        total = 0
        for info, reason in zip(self._members[first:last], self._refusals[first:last], strict=True):
            member = label(info.filename)
            if reason:
                yield FileResult(name, member, skipped=reason)
                continue
            if total + info.file_size > limits.max_total_bytes:
                yield FileResult(
                    name,
                    member,
                    skipped=f"the archive's total passed {limits.max_total_bytes} bytes "
                    "(CW_IMPORT_MAX_TOTAL_BYTES)",
                )
                continue
            data = _read_member(self._archive, info, limits)
            if isinstance(data, str):
                yield FileResult(name, member, skipped=data)
                continue
            total += len(data)
            if is_zip(data[:4]):
                yield FileResult(name, member, skipped="a nested archive: not followed")
                continue
            yield FileResult(name, member, content=read_file(data))

    def close(self) -> None:
        self._archive.close()


def _refusal(info: zipfile.ZipInfo, limits: Limits) -> str:
    """Why a member is skipped unread, from what the archive's directory says; "" if not."""
    name = info.filename
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "an absolute path as its name: skipped (names are labels, never paths)"
    if ".." in parts:
        return "a name that climbs out of the archive (../): skipped"
    if _UNSAFE_CHARACTERS.search(name):
        return "control characters in its name: skipped"
    if info.create_system == 3 and (info.external_attr >> 16) & _S_IFMT == _S_IFLNK:
        return "a symbolic link: not followed"
    if info.flag_bits & 0x1:
        return "encrypted: cannot be read without its password"
    if name.lower().endswith(_NESTED_SUFFIXES):
        return "a nested archive: not followed"
    if info.compress_type not in _METHODS:
        # zipfile inflates deflate in bounded steps (max_length) but hands bzip2 and LZMA
        # input to their decompressors whole: 785 bytes of bzip2 become 1 GiB in memory.
        return (
            f"compressed with method {info.compress_type}: imports read only stored and "
            "deflated members (what zip tools make by default); re-zip it"
        )
    if info.file_size > limits.max_member_bytes:
        return (
            f"declares {info.file_size} bytes, more than the limit of "
            f"{limits.max_member_bytes} (CW_IMPORT_MAX_FILE_BYTES)"
        )
    if info.file_size > max(info.compress_size, 1) * limits.max_ratio:
        return (
            f"a compression ratio above {limits.max_ratio}:1 ({info.compress_size} bytes "
            f"inflating to {info.file_size}; CW_IMPORT_MAX_RATIO)"
        )
    return ""


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits) -> bytes | str:
    """The member's bytes, read in chunks and never past the limits; or why it failed.
    zipfile stops at the declared size and checks the CRC at the end, so a member whose
    data is longer or shorter than it declares fails here instead of filling memory."""
    bound = min(limits.max_member_bytes, max(info.compress_size, 1) * limits.max_ratio)
    chunks: list[bytes] = []
    length = 0
    try:
        with archive.open(info) as member:
            while True:
                chunk = member.read(_CHUNK)
                if not chunk:
                    break
                length += len(chunk)
                if length > bound:
                    return f"inflates past {bound} bytes: stopped (CW_IMPORT_MAX_RATIO)"
                chunks.append(chunk)
    except NotImplementedError as exc:
        return f"an unsupported compression method ({exc})"
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError, ValueError) as exc:
        return f"its data does not match what the archive declares (size or CRC): {exc}"
    if length != info.file_size:  # a stored member, or a deflate stream that ends early
        return (
            "its data does not match what the archive declares (size or CRC): "
            f"declares {info.file_size} bytes but holds {length}"
        )
    return b"".join(chunks)
