"""The instance folder (CW_INSTANCE_DIR) and the secrets generated into it once; no Flask config, no URLs."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet

from app.settings import setting

BASE_DIR = Path(__file__).resolve().parent.parent


def instance_dir() -> Path:
    """The writable instance folder (SQLite file, generated secrets)."""
    path = Path(setting("CW_INSTANCE_DIR") or BASE_DIR / "instance")
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_token() -> str:
    """A random secret for SECRET_KEY or CW_AUDIT_KEY (384 bits, URL-safe base64)."""
    return secrets.token_urlsafe(48)


def new_kek() -> str:
    """A key-encryption key for CW_KEK (a Fernet key: AES-128-CBC + HMAC-SHA256)."""
    return Fernet.generate_key().decode()


def generate_secrets() -> dict[str, str]:
    """Fresh values of the three secrets every process of a deployment shares, by the same
    rules as the ones generated into instance/ when they are not set."""
    return {"SECRET_KEY": new_token(), "CW_KEK": new_kek(), "CW_AUDIT_KEY": new_token()}


def persistent_secret(name: str, make: object = None) -> str:
    """Return the secret stored in instance/<name>, generating it once (mode 0600).

    Several processes may start at once (web + workers): the value is written to a private
    temporary file and hard-linked into place, which is atomic and fails if another
    process won; then everyone reads the winner's complete file.
    """
    path = instance_dir() / name
    if path.exists():
        return path.read_text().strip()
    value = str(make() if callable(make) else new_token())
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        os.link(temp, path)
    except FileExistsError:
        return path.read_text().strip()
    finally:
        os.unlink(temp)
    return value
