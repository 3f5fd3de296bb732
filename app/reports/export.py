"""Report writers: rows in, CSV / XML / HTML bytes out, streamed. Pure (no Flask, no SQL).

A report is a head, any number of row blocks and a tail; a writer renders each part on its
own, so a report built in chunks (by id range, on several workers) is the head, the chunks
in order and the tail, and a million rows never sit in memory.

- CSV follows RFC 4180 (CRLF line ends, quotes doubled, a header row), UTF-8 with an
  optional byte order mark (Excel reads UTF-8 only with one). Text cells a spreadsheet
  would evaluate (starting with = + - @ TAB CR, OWASP "CSV injection") get a leading
  apostrophe, so ``=HYPERLINK(...)`` arrives as text; numbers are written as they are.
- XML is well-formed UTF-8; characters XML 1.0 does not allow (most C0 controls, lone
  surrogates, U+FFFE/U+FFFF) are removed, and CR is kept as a character reference.
- HTML is one self-contained page (inline style, no script, no external resource).
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import html
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from typing import Any, Protocol

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = frozenset(FORMULA_PREFIXES)
BOM = "\ufeff".encode()
# XML 1.0 §2.2 Char: #x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
BLOCK_ROWS = 1000  # rows rendered into one bytes block

Cell = str | int | float | Decimal | bool | dt.datetime | dt.date | enum.Enum | None
Row = Sequence[Cell]


class Format(enum.StrEnum):
    CSV = "csv"
    XML = "xml"
    HTML = "html"

    @property
    def mimetype(self) -> str:
        return {"csv": "text/csv", "xml": "application/xml", "html": "text/html"}[self.value]


@dataclass(frozen=True)
class Column:
    """A report column: ``key`` is its XML element name, ``title`` its CSV/HTML heading."""

    key: str
    title: str

    def __post_init__(self) -> None:
        if not _NAME.match(self.key) or self.key.lower().startswith("xml"):
            raise ValueError(f"{self.key!r} is not usable as an XML element name")


@dataclass(frozen=True)
class Meta:
    """What a report is: its type (the XML root's ``type``), title, when it was generated
    and the filters it was run with (shown in the HTML page and the XML root)."""

    report_type: str
    title: str
    generated_at: dt.datetime
    filters: Mapping[str, str] = field(default_factory=dict)
    # Plotly figures the HTML page draws above its table (the XML and CSV ignore them).
    figures: Sequence[Mapping[str, Any]] = ()


def escape_formula(text: str) -> str:
    """Prefix an apostrophe to text a spreadsheet would evaluate as a formula."""
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def plain_text(value: Cell) -> str:
    """A cell as text: empty for None, ISO 8601 for times (UTC, seconds), true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.replace(microsecond=0).isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _csv_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
    return "'" + text if text[:1] in _FORMULA_START else text


def _csv_number(value: int | float) -> int | float:
    return value  # csv.writer formats numbers itself


def _csv_none(value: None) -> str:
    return ""


def _csv_datetime(value: dt.datetime) -> str:
    if value.tzinfo is dt.UTC:
        return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    return plain_text(value)


def _csv_bool(value: bool) -> str:
    return "true" if value else "false"


def _csv_enum(value: enum.Enum) -> str:
    return _csv_text(str(value.value))


def _csv_other(value: Cell) -> str:
    if isinstance(value, enum.Enum):
        _CSV_BY_TYPE[type(value)] = _csv_enum  # seen once, looked up directly from then on
        return _csv_enum(value)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    return escape_formula(plain_text(value).replace("\x00", ""))


# Converters by exact type, looked up once per cell: a million rows of eighteen cells make
# the per-cell cost the report's cost. Anything else (enums, dates, subclasses) goes through
# _csv_other (which adds an enum's type here on first sight).
_CSV_BY_TYPE: dict[type, Callable[[Any], str | int | float]] = {
    str: _csv_text,
    int: _csv_number,
    float: _csv_number,
    type(None): _csv_none,
    bool: _csv_bool,
    dt.datetime: _csv_datetime,
}


def csv_cell(value: Cell) -> str | int | float:
    """One CSV cell: numbers as they are (a negative number is not a formula), text
    formula-escaped; NUL, which no spreadsheet keeps, removed."""
    return _CSV_BY_TYPE.get(type(value), _csv_other)(value)


def xml_text(value: Cell) -> str:
    """Text for an XML element or attribute: invalid XML 1.0 characters removed, markup and
    quotes escaped, CR kept as ``&#13;`` (a parser would turn a bare CR into LF)."""
    text = _NOT_XML_CHAR.sub("", plain_text(value))
    return html.escape(text, quote=True).replace("\r", "&#13;")


class Writer(Protocol):
    def head(self, meta: Meta, columns: Sequence[Column]) -> bytes: ...

    def rows(self, columns: Sequence[Column], rows: Iterable[Row]) -> Iterator[bytes]: ...

    def tail(self, meta: Meta, count: int) -> bytes: ...


def _blocks(render: Iterable[str]) -> Iterator[bytes]:
    """Join rendered rows into blocks of BLOCK_ROWS (fewer, larger writes)."""
    block: list[str] = []
    for text in render:
        block.append(text)
        if len(block) >= BLOCK_ROWS:
            yield "".join(block).encode()
            block = []
    if block:
        yield "".join(block).encode()


class CsvWriter:
    def __init__(self, *, bom: bool = False) -> None:
        self.bom = bom

    @staticmethod
    def _line(cells: Iterable[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow(cells)
        return buffer.getvalue()

    def head(self, meta: Meta, columns: Sequence[Column]) -> bytes:
        line = self._line(escape_formula(c.title) for c in columns).encode()
        return BOM + line if self.bom else line

    def rows(self, columns: Sequence[Column], rows: Iterable[Row]) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        count = 0
        convert, other = _CSV_BY_TYPE.get, _csv_other
        for row in rows:
            writer.writerow([convert(type(v), other)(v) for v in row])
            count += 1
            if count >= BLOCK_ROWS:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
                count = 0
        if count:
            yield buffer.getvalue().encode()

    def text_rows(
        self, blocks: Iterable[Sequence[Sequence[str]]], *, numeric: frozenset[int] = frozenset()
    ) -> Iterator[bytes]:
        """What ``rows`` writes, from blocks of rows whose cells are already their CSV text
        (times, booleans and empty cells formatted as ``csv_cell`` formats them, ``numeric``
        the positions of numbers written as text), one bytes block per block. A block is
        searched at once for what is left to do: cells to formula-escape or with a NUL
        (the separator before every cell, then a risky first character; a rare hit checks
        that block's rows one by one), and cells csv.writer would quote (a comma, a quote,
        CR or LF): a block with none is the cells joined by commas, row after row (what
        csv.writer writes for it, without a call per cell), any other goes to
        csv.writer.writerows."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        for block in blocks:
            if not block:
                continue
            joined = _SEPARATOR.join(chain.from_iterable(block))
            if _risky(_SEPARATOR + joined):
                block = [_escaped(row, numeric) for row in block]
                joined = _SEPARATOR.join(chain.from_iterable(block))
            if len(block[0]) > 1 and not _quoted(joined):
                # (a row of one empty cell would be written as "")
                yield ("\r\n".join(map(",".join, block)) + "\r\n").encode()
                continue
            writer.writerows(block)
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()

    def tail(self, meta: Meta, count: int) -> bytes:
        return b""


# text_rows: a cell a spreadsheet would evaluate, or a NUL, anywhere in a block (each cell
# preceded by the separator; a separator inside a cell only costs a closer look). Two
# searches: a pattern starting with a literal is scanned for quickly, an alternation of
# the two is not (3 us a row against 0.2 measured).
_SEPARATOR = "\x1f"
_FORMULA_CELL = re.compile("\x1f[=+\\-@\t\r]")


def _risky(joined: str) -> bool:
    return "\x00" in joined or _FORMULA_CELL.search(joined) is not None


def _quoted(joined: str) -> bool:
    """Whether csv.writer (QUOTE_MINIMAL, CRLF) would quote a cell of this text."""
    return "," in joined or '"' in joined or "\r" in joined or "\n" in joined


def _escaped(row: Sequence[str], numeric: frozenset[int]) -> Sequence[str]:
    if not _risky(_SEPARATOR + _SEPARATOR.join(row)):
        return row
    return [cell if i in numeric else _csv_text(cell) for i, cell in enumerate(row)]


class XmlWriter:
    def head(self, meta: Meta, columns: Sequence[Column]) -> bytes:
        filters = "".join(
            f'<filter name="{xml_text(k)}">{xml_text(v)}</filter>' for k, v in meta.filters.items()
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<report type="{xml_text(meta.report_type)}" title="{xml_text(meta.title)}" '
            f'generated="{xml_text(meta.generated_at)}">\n'
            f"<filters>{filters}</filters>\n<rows>\n"
        ).encode()

    def rows(self, columns: Sequence[Column], rows: Iterable[Row]) -> Iterator[bytes]:
        keys = [c.key for c in columns]
        return _blocks(
            "<row>"
            + "".join(f"<{k}>{xml_text(v)}</{k}>" for k, v in zip(keys, row, strict=True))
            + "</row>\n"
            for row in rows
        )

    def tail(self, meta: Meta, count: int) -> bytes:
        return f"</rows>\n<count>{count}</count>\n</report>\n".encode()


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5rem;color:#212529}"
    "h1{font-size:1.3rem}table{border-collapse:collapse;font-size:.85rem}"
    "th,td{border:1px solid #dee2e6;padding:.25rem .5rem;text-align:left;vertical-align:top}"
    "th{background:#f1f3f5;position:sticky;top:0}tr:nth-child(even) td{background:#f8f9fa}"
    "dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}"
    ".charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1rem;"
    "margin:1rem 0}"
)


class HtmlWriter:
    """A self-contained page: inline CSS, nothing loaded from elsewhere. With figures and
    ``plotly_js`` (the text of plotly.min.js) the page draws its charts with plotly.js
    inlined; it is a file to mail or archive, not a console page, so inline script is
    fine here. Without plotly_js it has no script at all."""

    def __init__(self, plotly_js: str = "") -> None:
        self.plotly_js = plotly_js

    def _charts(self, meta: Meta) -> str:
        if not (meta.figures and self.plotly_js):
            return ""
        boxes = "".join(
            f'<div class="chart" id="cw-chart-{i}"></div>' for i in range(len(meta.figures))
        )
        # No "<" in the script element (no "</script", no "<!--"): in JSON a "<" occurs
        # only inside strings, where \u003c reads the same.
        figures = json.dumps(list(meta.figures), separators=(",", ":")).replace("<", "\\u003c")
        script = self.plotly_js.replace("</script", "<\\/script")
        draw = (
            f"var figures={figures};figures.forEach(function(f,i){{"
            'Plotly.newPlot("cw-chart-"+i,f.data,f.layout,{displaylogo:false,responsive:true});});'
        )
        return f'<div class="charts">{boxes}</div><script>{script}</script><script>{draw}</script>'

    def head(self, meta: Meta, columns: Sequence[Column]) -> bytes:
        title = html.escape(meta.title)
        facts = {"Generated": plain_text(meta.generated_at), **dict(meta.filters)}
        listed = "".join(
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(_NOT_XML_CHAR.sub('', v))}</dd>"
            for k, v in facts.items()
        )
        heads = "".join(f"<th>{html.escape(c.title)}</th>" for c in columns)
        return (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{title}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{title}</h1><dl>{listed}</dl>{self._charts(meta)}"
            f"<table><thead><tr>{heads}</tr></thead><tbody>\n"
        ).encode()

    def rows(self, columns: Sequence[Column], rows: Iterable[Row]) -> Iterator[bytes]:
        return _blocks(
            "<tr>"
            + "".join(f"<td>{html.escape(_NOT_XML_CHAR.sub('', plain_text(v)))}</td>" for v in row)
            + "</tr>\n"
            for row in rows
        )

    def tail(self, meta: Meta, count: int) -> bytes:
        return f"</tbody></table><p>{count} rows.</p></body></html>\n".encode()


def writer_for(fmt: Format, *, bom: bool = False, plotly_js: str = "") -> Writer:
    if fmt == Format.CSV:
        return CsvWriter(bom=bom)
    if fmt == Format.XML:
        return XmlWriter()
    return HtmlWriter(plotly_js=plotly_js)


def stream(
    writer: Writer, meta: Meta, columns: Sequence[Column], rows: Iterable[Row]
) -> Iterator[bytes]:
    """The whole report as a stream of byte blocks (head, row blocks, tail)."""
    counted = _Counter(rows)
    yield writer.head(meta, columns)
    yield from writer.rows(columns, counted)
    yield writer.tail(meta, counted.count)


def stitch(
    writer: Writer, meta: Meta, columns: Sequence[Column], chunks: Iterable[bytes], count: int
) -> Iterator[bytes]:
    """A report from its chunks rendered apart (``writer.rows`` joined), in order."""
    yield writer.head(meta, columns)
    yield from chunks
    yield writer.tail(meta, count)


class _Counter:
    def __init__(self, rows: Iterable[Row]) -> None:
        self._rows = rows
        self.count = 0

    def __iter__(self) -> Iterator[Row]:
        for row in self._rows:
            self.count += 1
            yield row
