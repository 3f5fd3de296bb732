"""Reading uploads: good ZIPs of openssl-made certificates, and hostile archives built byte by
byte in the tests, each refused whole or skipped per member with its reason, with the
memory the reading took measured (tracemalloc) and bounded."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest

from app.pki.archive import (
    ArchiveRefused,
    Limits,
    declared_member_count,
    plan_parts,
    read_upload,
)
from tests.unit.pki.importfiles import OpensslFiles, RawMember, raw_member, raw_zip, zip_of

DATA = Path(__file__).parent / "data"
# bzip2 of 1 GiB of zeros: 785 bytes. Made once by
#   python -c "import bz2; c = bz2.BZ2Compressor(9); ..." (64 chunks of 16 MiB of zeros);
# a ZIP member of it is the classic bomb (a 1 KB member inflating to 1 GiB).
GIB = 1024**3
GIB_ZEROS_CRC = 0x5B64C2B0
DEFAULTS = Limits()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> OpensslFiles:
    return OpensslFiles(tmp_path_factory.mktemp("archive"))


def results(data: bytes, limits: Limits = DEFAULTS, name: str = "upload.zip") -> list:
    return list(read_upload(name, io.BytesIO(data), limits))


def fates(data: bytes, limits: Limits = DEFAULTS) -> dict[str, str]:
    """member -> "N certificates" or the skip reason or the error."""
    out = {}
    for result in results(data, limits):
        if result.skipped:
            out[result.member] = "skipped: " + result.skipped
        elif result.content.error:
            out[result.member] = "invalid: " + result.content.error
        else:
            out[result.member] = f"{len(result.content.certificates)} certificates"
    return out


def test_a_zip_of_everything_gives_each_file_its_certificates(files):
    archive = zip_of(
        {
            "certs/leaf.crt": files.pem("leaf"),
            "certs/renamed-der.pem": files.der("self"),  # DER under a PEM name
            "chain.pem": files.pem("leaf") + files.pem("inter") + files.pem("root"),
            "bundle.p7b": files.pkcs7("leaf", "inter"),
            "bundle-pem.p7c": files.pkcs7("root", der=False),
            "README.txt": b"these are our certificates\n",
            "empty-dir/": b"",
        }
    )
    assert fates(archive) == {
        "certs/leaf.crt": "1 certificates",
        "certs/renamed-der.pem": "1 certificates",
        "chain.pem": "3 certificates",
        "bundle.p7b": "2 certificates",
        "bundle-pem.p7c": "1 certificates",
        "README.txt": "invalid: not a certificate (PEM, DER or PKCS#7): "
        + results(archive)[5].content.error.split(": ", 1)[1],
    }
    assert {r.file for r in results(archive)} == {"upload.zip"}


def test_a_single_file_is_one_result(files):
    [result] = results(files.pem("leaf"), name="leaf.pem")
    assert (result.file, result.member, len(result.content.certificates)) == ("leaf.pem", "", 1)


def test_a_single_file_over_the_limit_is_skipped_unread(files):
    [result] = results(files.pem("leaf") * 3, Limits(max_member_bytes=1000), name="big.pem")
    assert result.skipped == "larger than 1000 bytes (CW_IMPORT_MAX_FILE_BYTES)"


def test_hostile_members_are_skipped_each_with_its_reason_and_the_rest_is_read(files):
    leaf = files.pem("leaf")
    nested = zip_of({"inner.pem": leaf})
    archive = raw_zip(
        [
            raw_member("../../etc/cron.d/evil.pem", leaf),
            raw_member("certs/../../evil.pem", leaf),
            raw_member("/etc/ssl/evil.pem", leaf),
            raw_member("C:\\Windows\\evil.pem", leaf),
            raw_member("\\\\server\\share\\evil.pem", leaf),
            raw_member("link.pem", b"/etc/shadow", external_attr=0o120777 << 16),
            raw_member("secret.pem", leaf, flags=0x1),
            raw_member("inner.zip", nested),
            raw_member("disguised.pem", nested),  # a ZIP under a certificate's name
            raw_member("good.pem", leaf),
        ]
    )
    assert fates(archive) == {
        "../../etc/cron.d/evil.pem": "skipped: a name that climbs out of the archive (../): skipped",
        "certs/../../evil.pem": "skipped: a name that climbs out of the archive (../): skipped",
        "/etc/ssl/evil.pem": "skipped: an absolute path as its name: skipped (names are labels, never paths)",
        "C:\\Windows\\evil.pem": "skipped: an absolute path as its name: skipped (names are labels, never paths)",
        "\\\\server\\share\\evil.pem": "skipped: an absolute path as its name: skipped (names are labels, never paths)",
        "link.pem": "skipped: a symbolic link: not followed",
        "secret.pem": "skipped: encrypted: cannot be read without its password",
        "inner.zip": "skipped: a nested archive: not followed",
        "disguised.pem": "skipped: a nested archive: not followed",
        "good.pem": "1 certificates",
    }  # fmt: skip


@pytest.mark.parametrize("declared", [100, 5000], ids=["shorter", "longer"])
def test_a_member_whose_declared_size_lies_is_skipped(files, declared):
    leaf = files.pem("leaf")
    assert 100 < len(leaf) < 5000
    archive = raw_zip([raw_member("liar.pem", leaf, size=declared), raw_member("ok.pem", leaf)])
    fate = fates(archive)
    assert fate["liar.pem"].startswith(
        "skipped: its data does not match what the archive declares (size or CRC)"
    )
    assert fate["ok.pem"] == "1 certificates"


def test_a_bad_crc_is_skipped(files):
    leaf = files.pem("leaf")
    archive = raw_zip([raw_member("crc.pem", leaf, crc=zlib.crc32(leaf) ^ 1)])
    assert "Bad CRC-32" in fates(archive)["crc.pem"]


def deflate_bomb(declared_size: int) -> bytes:
    """1 GiB of zeros deflated (1 MiB at a time, each compressed block the same after a full
    flush): a 1 MB member that inflates to 1 GiB, the most deflate allows (~1000:1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    stream = block * 1024 + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    return raw_zip(
        [
            RawMember("bomb.pem", stream, method=8, crc=GIB_ZEROS_CRC, size=declared_size),
            raw_member("after.pem", b"not a certificate"),
        ]
    )


def bzip2_bomb(declared_size: int) -> bytes:
    stream = (DATA / "zeros-1gib.bz2").read_bytes()
    assert len(stream) < 1024  # a 1 KB member...
    return raw_zip(
        [
            RawMember(
                "bomb.pem", stream, method=zipfile.ZIP_BZIP2, crc=GIB_ZEROS_CRC, size=declared_size
            ),
            raw_member("after.pem", b"not a certificate"),
        ]
    )


def test_the_bzip2_bomb_really_inflates_far_past_any_bound():
    import bz2

    decompressor = bz2.BZ2Decompressor()
    first = decompressor.decompress((DATA / "zeros-1gib.bz2").read_bytes(), max_length=64 << 20)
    assert first == bytes(64 << 20)  # ...that gives 64 MiB and would go on to 1 GiB


def measured(fn):
    tracemalloc.start()
    try:
        value = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return value, peak


@pytest.mark.parametrize("declared", [GIB, 1000], ids=["honest", "lying"])
def test_a_bzip2_bomb_is_skipped_unread_whatever_it_declares(declared):
    # zipfile would hand the 785 bytes to bz2 whole and get 1 GiB back in one piece.
    fate, peak = measured(lambda: fates(bzip2_bomb(declared)))
    assert fate["bomb.pem"] == (
        "skipped: compressed with method 12: imports read only stored and deflated members "
        "(what zip tools make by default); re-zip it"
    )
    assert fate["after.pem"].startswith("invalid: not a certificate")
    assert peak < 2 << 20


def test_a_deflate_bomb_that_declares_its_size_is_skipped_unread():
    bomb = deflate_bomb(GIB)
    # Limits that let a 1 GiB member through by size: the ratio stops it.
    limits = Limits(max_member_bytes=2 * GIB, max_total_bytes=2 * GIB)
    fate, peak = measured(lambda: fates(bomb, limits))
    compressed = zipfile.ZipFile(io.BytesIO(bomb)).getinfo("bomb.pem").compress_size
    assert fate["bomb.pem"] == (
        f"skipped: a compression ratio above 100:1 ({compressed} bytes inflating to {GIB}; "
        "CW_IMPORT_MAX_RATIO)"
    )
    assert fate["after.pem"].startswith("invalid: not a certificate")
    assert peak < 4 << 20


def test_a_deflate_bomb_that_declares_a_small_size_is_stopped_at_that_size():
    # It claims 100 KB (a plausible ratio for its 1 MB): zipfile inflates no further than
    # that, and the CRC of what it read betrays the lie.
    bomb = deflate_bomb(100_000)
    fate, peak = measured(lambda: fates(bomb))
    assert fate["bomb.pem"].startswith(
        "skipped: its data does not match what the archive declares (size or CRC)"
    )
    assert fate["after.pem"].startswith("invalid: not a certificate")
    assert peak < 4 << 20


def test_a_bomb_under_generous_limits_is_still_bounded_by_the_member_limit():
    limits = Limits(max_ratio=10**9, max_member_bytes=8 << 20, max_total_bytes=2 * GIB)
    bomb = deflate_bomb(GIB)
    fate, peak = measured(lambda: fates(bomb, limits))
    assert fate["bomb.pem"] == (
        f"skipped: declares {GIB} bytes, more than the limit of {8 << 20} "
        "(CW_IMPORT_MAX_FILE_BYTES)"
    )
    assert peak < 4 << 20


def test_an_archive_that_inflates_past_the_total_is_refused_whole(files):
    archive = zip_of({f"{i}.pem": files.pem("leaf") for i in range(3)})
    size = len(files.pem("leaf"))
    with pytest.raises(
        ArchiveRefused,
        match=rf"inflates to {3 * size} bytes, more than the limit of {2 * size} \(CW_IMPORT_MAX_TOTAL_BYTES\)",
    ):
        results(archive, Limits(max_total_bytes=2 * size))


def many_tiny_members(count: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(count):
            archive.writestr(f"{i}", b"x")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hundred_thousand() -> bytes:
    return many_tiny_members(100_000)


def test_100000_tiny_members_are_refused_before_the_directory_is_read(hundred_thousand):
    assert declared_member_count(io.BytesIO(hundred_thousand)) == 100_000

    def read():
        with pytest.raises(ArchiveRefused) as refused:
            results(hundred_thousand, Limits(max_members=10_000))
        return str(refused.value)

    message, peak = measured(read)
    assert message == (
        "upload.zip: the archive has 100000 members, more than the limit of 10000 "
        "(CW_IMPORT_MAX_MEMBERS); split it"
    )
    assert peak < 1 << 20  # the 100,000 entries of the directory were never parsed


def test_zip64_member_counts_are_read(files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", allowZip64=True) as archive:
        for i in range(3):
            with archive.open(f"{i}.pem", "w", force_zip64=True) as member:
                member.write(files.pem("leaf"))
    # force_zip64 only widens member sizes; ask for a ZIP64 end record explicitly.
    assert declared_member_count(io.BytesIO(buffer.getvalue())) == 3


def test_something_that_only_looks_like_a_zip_is_refused():
    with pytest.raises(ArchiveRefused, match=r"upload\.zip: not a readable ZIP archive"):
        results(b"PK\x03\x04 and then nothing of a zip")


def test_an_archive_is_cut_into_parts_that_read_the_same_members_as_the_whole(files):
    members = {f"m{i}.pem": files.pem("leaf") for i in range(5)}
    members["dir/"] = b""  # directories are no members of any part
    members["big.pem"] = files.pem("leaf") + files.pem("inter") + files.pem("root")
    archive = zip_of(members)
    whole = [(r.member, r.skipped) for r in results(archive)]
    parts = plan_parts(io.BytesIO(archive), max_members=2, max_bytes=10**9)
    assert parts == [(0, 2), (2, 4), (4, 6)]
    pieces = [
        (r.member, r.skipped)
        for part in parts
        for r in read_upload("upload.zip", io.BytesIO(archive), DEFAULTS, members=part)
    ]
    assert pieces == whole
    # By declared size: a part ends before the member that would pass the bound; a member
    # larger than the bound is a part of its own.
    size = len(files.pem("leaf"))
    assert plan_parts(io.BytesIO(archive), max_members=99, max_bytes=2 * size) == [
        (0, 2),
        (2, 4),
        (4, 5),
        (5, 6),
    ]
    # Anything but a readable ZIP is one part, and only its first part reads it.
    assert plan_parts(io.BytesIO(files.pem("leaf")), max_members=2, max_bytes=9) == [(0, 1)]
    assert plan_parts(io.BytesIO(b"PK\x03\x04 broken"), max_members=2, max_bytes=9) == [(0, 1)]
    assert list(read_upload("x.pem", io.BytesIO(files.pem("leaf")), DEFAULTS, (1, 2))) == []
