"""CA private keys sealed at rest under rotatable key-encryption keys (KEKs); no I/O.

Sealing uses Fernet (AES-128-CBC + HMAC-SHA256, authenticated) through MultiFernet: the
first KEK seals, every KEK may unseal, and reseal() moves a token to the first KEK. KEKs
come from configuration as "key1,key2" (newest first); nothing here logs or shows them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.pki.errors import FormatError, SealError
from app.pki.keys import PrivateKey, load_private_key, private_key_to_der


@dataclass(frozen=True)
class KeyEncryptionKeys(Sequence[bytes]):
    """Configured KEKs, newest first. repr() shows how many, never the keys."""

    keys: tuple[bytes, ...] = field(repr=False)

    def __repr__(self) -> str:
        return f"KeyEncryptionKeys(<{len(self.keys)} hidden>)"

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | Sequence[bytes]:
        return self.keys[index]

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.keys)


def new_kek() -> str:
    """A fresh KEK for configuration: 32 random bytes, url-safe base64 (44 characters)."""
    return Fernet.generate_key().decode("ascii")


def parse_keks(config: str) -> KeyEncryptionKeys:
    """Parse "key1,key2" (newest first; spaces and empty items ignored).

    Raises:
        SealError: no key, or an item that is not a Fernet key (names its position only).
    """
    items = [item.strip() for item in config.split(",") if item.strip()]
    if not items:
        raise SealError("no key-encryption key is configured")
    keys = tuple(item.encode("ascii", "replace") for item in items)
    _fernet(keys)
    return KeyEncryptionKeys(keys)


def seal(private_key_der: bytes, keks: Sequence[bytes]) -> bytes:
    """Encrypt a DER private key under the first KEK.

    Raises:
        SealError: no KEK, or an invalid one.
    """
    return _fernet(keks).encrypt(private_key_der)


def unseal(token: bytes, keks: Sequence[bytes]) -> bytes:
    """Decrypt a sealed key with whichever configured KEK fits.

    Raises:
        SealError: no configured KEK opens it (wrong keys, or the token was altered).
    """
    try:
        return _fernet(keks).decrypt(token)
    except InvalidToken:
        raise SealError(
            "the sealed CA key cannot be opened with any configured key-encryption key "
            "(was the key that sealed it removed, or the stored value altered?)"
        ) from None


def reseal(token: bytes, keks: Sequence[bytes]) -> bytes:
    """Re-encrypt a sealed key under the first (newest) KEK, for key rotation.

    Raises:
        SealError: no configured KEK opens it.
    """
    try:
        return _fernet(keks).rotate(token)
    except InvalidToken:
        raise SealError(
            "the sealed CA key cannot be re-sealed: no configured key-encryption key opens it"
        ) from None


def seal_private_key(private_key: PrivateKey, keks: Sequence[bytes]) -> bytes:
    """seal() of the key's unencrypted PKCS#8 DER."""
    return seal(private_key_to_der(private_key), keks)


def unseal_private_key(token: bytes, keks: Sequence[bytes]) -> PrivateKey:
    """unseal() and load the key.

    Raises:
        SealError: no configured KEK opens it, or the plaintext is not a key we hold.
    """
    der = unseal(token, keks)
    try:
        return load_private_key(der)
    except FormatError as exc:
        raise SealError(f"the unsealed value is not a usable CA key: {exc}") from None


def _fernet(keks: Sequence[bytes]) -> MultiFernet:
    if not keks:
        raise SealError("no key-encryption key is configured")
    fernets = []
    for position, key in enumerate(keks, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            raise SealError(
                f"key-encryption key #{position} is not a valid Fernet key "
                "(32 bytes, url-safe base64: generate one with new_kek())"
            ) from None
    return MultiFernet(fernets)
