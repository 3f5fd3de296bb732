"""Report charts: tallies of chart columns per chunk, merged, drawn as Plotly figures."""

from __future__ import annotations

import datetime as dt

from app.reports.summary import ChartSpec, Tallier, figures, merge

SPECS = (
    ChartSpec("status", "By status", "donut"),
    ChartSpec("expires", "Expiring by month", "month"),
    ChartSpec("issuer", "By issuer"),
)
COLUMNS = ["id", "status", "issuer", "expires"]


def tally(rows):
    tallier = Tallier(SPECS, COLUMNS)
    for row in rows:
        tallier.feed(row)
    return tallier.tally


def at(month: int) -> dt.datetime:
    return dt.datetime(2027, month, 3, tzinfo=dt.UTC)


def test_chunks_tally_apart_and_merge_to_the_whole():
    first = tally([(1, "Issued", "CA 1", at(2)), (2, "Expired", None, at(1))])
    second = tally([(3, "Issued", "CA 1", at(2)), (4, "Issued", "", None)])
    total = merge([first, second])
    assert total["status"] == {"Issued": 3, "Expired": 1}
    assert total["issuer"] == {"CA 1": 2, "none": 2}
    assert total["expires"] == {"2027-02": 2, "2027-01": 1, "none": 1}


def test_figures_count_in_whole_numbers_months_in_order_and_the_rest_as_other():
    counts = {f"CA {i:02d}": 20 - i for i in range(15)}
    drawn = figures(
        SPECS,
        {
            "status": {"Issued": 2, "Expired": 1},
            "expires": {"2027-03": 1, "2026-12": 4, "none": 2},
            "issuer": counts,
        },
    )
    donut, months, issuers = drawn
    assert donut["data"][0]["type"] == "pie" and donut["data"][0]["values"] == [2, 1]
    assert months["data"][0]["x"] == ["2026-12", "2027-03"]  # in order; "none" left out
    assert months["layout"]["yaxis"] == {
        "rangemode": "tozero",
        "tickformat": ",d",
        "tick0": 0,
        "dtick": 1,
    }
    assert months["layout"]["xaxis"] == {"type": "category"}
    bars = issuers["data"][0]
    assert bars["x"][:2] == ["CA 00", "CA 01"] and bars["x"][-1] == "other"
    assert len(bars["x"]) == 13 and sum(bars["y"]) == sum(counts.values())
    assert issuers["layout"]["yaxis"]["tickformat"] == ",d"


def test_an_empty_report_draws_empty_charts():
    drawn = figures(SPECS, {})
    assert [f["data"] for f in drawn] == [[], [], []]
    assert all(f["layout"]["annotations"][0]["text"] == "nothing yet" for f in drawn)
