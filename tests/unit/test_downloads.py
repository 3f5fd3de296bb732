"""app.downloads: one file-name rule and RFC 6266 Content-Disposition for every download."""

from __future__ import annotations

import re
from urllib.parse import unquote

import pytest

from app.downloads import content_disposition, safe_filename


def extended_filename(header: str) -> str:
    """The RFC 8187 ``filename*`` value, decoded as a browser does (it prefers it)."""
    found = re.search(r"filename\*=UTF-8''([^;\s]+)", header)
    assert found, header
    return unquote(found.group(1), encoding="utf-8", errors="strict")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.example.com.pem", "www.example.com.pem"),
        ("*.example.com.pem", "star.example.com.pem"),
        ('evil"\r\nSet-Cookie: x=1.pem', "evil_Set-Cookie_ x=1.pem"),
        ("../../etc/passwd", "etc_passwd"),
        ("C:\\Windows\\x.cer", "C_Windows_x.cer"),
        ("", "download"),
    ],
)
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


def test_plain_names_need_no_extended_parameter():
    assert content_disposition("ca1.crl") == 'attachment; filename="ca1.crl"'


def test_non_ascii_names_travel_in_filename_star():
    header = content_disposition("bücher.例え.pem")
    assert header.startswith("attachment; filename=\"b_cher.__.pem\"; filename*=UTF-8''")
    assert "\r" not in header and "\n" not in header
    assert extended_filename(header) == "bücher.例え.pem"


def test_header_injection_is_impossible():
    header = content_disposition('a"; filename="b.exe\r\nX-Evil: 1')
    assert "\r" not in header and "\n" not in header
    assert header.count('"') == 2
