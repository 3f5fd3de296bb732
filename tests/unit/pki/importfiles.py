"""Files to import, made by the openssl command line (real certificates, odd ones too) and
ZIP archives built byte by byte (hostile ones: lying sizes, encrypted flags, symlinks)."""

from __future__ import annotations

import io
import struct
import subprocess
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "openssl"


def run(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    return subprocess.run(
        [OPENSSL, *args], cwd=cwd, input=stdin, capture_output=True, check=True
    ).stdout


class OpensslFiles:
    """A CA, an intermediate and leaves made by openssl, in a directory; PEM and DER."""

    def __init__(self, root: Path) -> None:
        self.root = root
        run(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "root.key", "-subj", "/CN=Import Test Root", "-days", "3650",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-out", "root.pem", cwd=root,
        )  # fmt: skip
        self.sign("inter", "/CN=Import Test Intermediate", issuer="root", ca=True)
        self.sign("leaf", "/CN=www.import.test", issuer="inter", san="DNS:www.import.test")
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "self.key", "-subj", "/CN=self-signed.test", "-days", "30",
            "-out", "self.pem", cwd=root)  # fmt: skip

    def sign(
        self,
        name: str,
        subject: str,
        *,
        issuer: str,
        ca: bool = False,
        san: str = "",
        serial: str = "",
        days: str = "90",
        extensions: tuple[str, ...] | None = None,
        key: str = "ec",
    ) -> bytes:
        """A certificate signed by ``issuer`` (PEM); ``extensions=()`` makes a v1."""
        keyopt = ("-pkeyopt", "ec_paramgen_curve:P-256") if key == "ec" else ()
        run("req", "-new", "-newkey", key, *keyopt, "-nodes", "-keyout", f"{name}.key",
            "-subj", subject, "-out", f"{name}.csr", cwd=self.root)  # fmt: skip
        if extensions is None:
            lines = ["basicConstraints=critical,CA:TRUE" if ca else "basicConstraints=CA:FALSE"]
            if ca:
                lines.append("keyUsage=critical,keyCertSign,cRLSign")
            else:
                lines.append("extendedKeyUsage=serverAuth")
            if san:
                lines.append(f"subjectAltName={san}")
        else:
            lines = list(extensions)
        args = ["x509", "-req", "-in", f"{name}.csr", "-CA", f"{issuer}.pem",
                "-CAkey", f"{issuer}.key", "-days", days, "-out", f"{name}.pem"]  # fmt: skip
        if serial:
            args += ["-set_serial", serial]
        if lines:
            (self.root / f"{name}.ext").write_text("\n".join(lines) + "\n")
            args += ["-extfile", f"{name}.ext"]
        run(*args, cwd=self.root)
        return self.pem(name)

    def pem(self, name: str) -> bytes:
        return (self.root / f"{name}.pem").read_bytes()

    def der(self, name: str) -> bytes:
        return run("x509", "-in", f"{name}.pem", "-outform", "DER", cwd=self.root)

    def pkcs7(self, *names: str, der: bool = True) -> bytes:
        args = ["crl2pkcs7", "-nocrl"]
        for name in names:
            args += ["-certfile", f"{name}.pem"]
        if der:
            args += ["-outform", "DER"]
        return run(*args, cwd=self.root)


@dataclass
class RawMember:
    """A ZIP member written byte by byte, so that tests can make it lie."""

    name: str
    data: bytes  # the stored (compressed) bytes
    method: int = 0  # 0 stored, 8 deflate, 12 bzip2
    crc: int | None = None
    size: int | None = None  # the declared inflated size
    flags: int = 0
    external_attr: int = 0
    create_system: int = 3  # Unix


def deflated(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def raw_member(name: str, content: bytes, **kwargs: object) -> RawMember:
    """A deflated member whose CRC and size are the truth unless given."""
    fields: dict[str, object] = {
        "method": 8,
        "crc": zlib.crc32(content),
        "size": len(content),
    }
    fields.update(kwargs)
    return RawMember(name, deflated(content), **fields)  # type: ignore[arg-type]


def raw_zip(members: list[RawMember]) -> bytes:
    """A ZIP (APPNOTE.TXT §4.3) with exactly the headers given."""
    out = io.BytesIO()
    central = io.BytesIO()
    for member in members:
        name = member.name.encode()
        crc = zlib.crc32(member.data) if member.crc is None else member.crc
        size = len(member.data) if member.size is None else member.size
        offset = out.tell()
        out.write(
            struct.pack(
                "<4sHHHHHIIIHH",
                b"PK\x03\x04",
                20,
                member.flags,
                member.method,
                0,
                0x21,
                crc,
                len(member.data),
                size,
                len(name),
                0,
            )
        )
        out.write(name)
        out.write(member.data)
        central.write(
            struct.pack(
                "<4sBBHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                member.create_system,
                20,
                member.flags,
                member.method,
                0,
                0x21,
                crc,
                len(member.data),
                size,
                len(name),
                0,
                0,
                0,
                0,
                member.external_attr,
                offset,
            )
        )
        central.write(name)
    directory = central.getvalue()
    start = out.tell()
    out.write(directory)
    out.write(
        struct.pack(
            "<4sHHHHIIH",
            b"PK\x05\x06",
            0,
            0,
            len(members),
            len(members),
            len(directory),
            start,
            0,
        )
    )
    return out.getvalue()


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
