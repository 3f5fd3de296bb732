"""Sealing CA keys at rest under rotatable key-encryption keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from app.pki import keystore
from app.pki.errors import SealError

if TYPE_CHECKING:
    from conftest import KeyCache

SECRET = b"\x30\x82 pretend this is a PKCS#8 private key"


def _message(call: object) -> str:
    assert callable(call)
    with pytest.raises(SealError) as caught:
        call()
    return str(caught.value)


def test_new_kek_and_parse() -> None:
    first, second = keystore.new_kek(), keystore.new_kek()
    assert len(first) == 44 and first != second
    keks = keystore.parse_keks(f" {first} ,{second},, ")
    assert list(keks) == [first.encode(), second.encode()]
    assert len(keks) == 2 and keks[0] == first.encode()
    assert first not in repr(keks) and second not in repr(keks)
    assert repr(keks) == "KeyEncryptionKeys(<2 hidden>)"


def test_parse_refusals() -> None:
    assert _message(lambda: keystore.parse_keks(" , ")) == "no key-encryption key is configured"
    good = keystore.new_kek()
    message = _message(lambda: keystore.parse_keks(f"{good},not-a-key"))
    assert message.startswith("key-encryption key #2 is not a valid Fernet key")
    assert "not-a-key" not in message  # never echo key material
    assert _message(lambda: keystore.seal(SECRET, [])) == "no key-encryption key is configured"


def test_seal_unseal_round_trip() -> None:
    keks = keystore.parse_keks(keystore.new_kek())
    token = keystore.seal(SECRET, keks)
    assert SECRET not in token
    assert keystore.unseal(token, keks) == SECRET


def test_rotation() -> None:
    old, new = keystore.new_kek().encode(), keystore.new_kek().encode()
    token = keystore.seal(SECRET, [old])
    assert keystore.unseal(token, [new, old]) == SECRET  # all configured keys decrypt
    resealed = keystore.reseal(token, [new, old])
    assert keystore.unseal(resealed, [new]) == SECRET  # now under the first key only
    assert _message(lambda: keystore.unseal(resealed, [old])).startswith(
        "the sealed CA key cannot be opened with any configured key-encryption key"
    )
    assert _message(lambda: keystore.reseal(token, [new])).startswith(
        "the sealed CA key cannot be re-sealed"
    )


def test_tampered_token_is_refused() -> None:
    keks = [keystore.new_kek().encode()]
    token = bytearray(keystore.seal(SECRET, keks))
    token[-5] = ord("A") if token[-5] != ord("A") else ord("B")
    assert "cannot be opened" in _message(lambda: keystore.unseal(bytes(token), keks))


def test_private_key_helpers(key_cache: KeyCache) -> None:
    keks = keystore.parse_keks(keystore.new_kek())
    key = key_cache.get("EC-P384")
    token = keystore.seal_private_key(key, keks)
    assert keystore.unseal_private_key(token, keks).public_key() == key.public_key()
    not_a_key = keystore.seal(SECRET, keks)
    assert _message(lambda: keystore.unseal_private_key(not_a_key, keks)).startswith(
        "the unsealed value is not a usable CA key"
    )
