"""pandad.dev.devpage: the development monitor's page, from plain data (no server)."""

import re
import time
from html.parser import HTMLParser
from typing import Dict, List

from pandad.dev.devpage import (SHORT_TEXT, choose_columns, display_value, render_chart,
                            render_page, status_counts)

CLASSAD = [{"id": "s#1.0#9", "condorid": "1.0", "JobStatus": 2, "Owner": "alice",
            "QDate": 1764700000, "Cmd": "/bin/sleep", "Iwd": "/home/alice", "removed": False}]
RENAMED_2014 = [{"id": "s#1.0#9", "condorid": "1.0", "JobStatus": 2, "owner": "alice",
                 "submitted": "2026-12-02 20:00:00", "cmd": "/bin/sleep", "pri": 0,
                 "removed": False}]


class _Cells(HTMLParser):
    """Header names and each row's cells' text, from the page's jobs table."""

    def __init__(self) -> None:
        super().__init__()
        self.head: List[str] = []
        self.rows: List[List[str]] = []
        self._where = ""

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "th":
            self._where = "th"
            self.head.append("")
        elif tag == "tr" and dict(attrs).get("data-id") is not None:
            self.rows.append([])
        elif tag == "td":
            self._where = "td"
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("th", "td"):
            self._where = ""

    def handle_data(self, data: str) -> None:
        if self._where == "th":
            self.head[-1] += data
        elif self._where == "td":
            self.rows[-1][-1] += data


def cells(page: str) -> _Cells:
    parser = _Cells()
    parser.feed(page)
    return parser


def page_of(jobs: List[Dict], tally=None) -> str:
    tally = tally if tally is not None else {(2, False): len(jobs)}
    return render_page(jobs, tally, {"POST 201": 1}, len(jobs), "/api/jobs/", now=0)


def test_columns_are_the_spellings_that_arrived() -> None:
    assert choose_columns(CLASSAD) == ["id", "condorid", "JobStatus", "Owner", "QDate", "Cmd"]
    assert choose_columns(RENAMED_2014) == ["id", "condorid", "JobStatus", "owner",
                                            "submitted", "cmd", "pri"]
    assert choose_columns(CLASSAD + RENAMED_2014)[3:5] == ["Owner", "owner"]
    assert choose_columns([]) == ["id", "condorid"]


def test_page_table_shows_classad_spellings() -> None:
    table = cells(page_of(CLASSAD))
    assert table.head == ["id", "condorid", "queue", "JobStatus", "Owner", "QDate", "Cmd",
                          "other fields"]
    qdate = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1764700000))
    assert table.rows == [["s#1.0#9", "1.0", "in the queue", "Running", "alice", qdate,
                           "/bin/sleep", "1 moreIwd/home/alice"]]


def test_page_table_shows_2014_spellings() -> None:
    table = cells(page_of(RENAMED_2014))
    assert table.head[3:7] == ["JobStatus", "owner", "submitted", "cmd"]
    assert table.rows[0][4:7] == ["alice", "2026-12-02 20:00:00", "/bin/sleep"]


def test_jobstatus_removed_and_left_the_queue_are_told_apart() -> None:
    jobs = [{"id": "a", "JobStatus": 3, "removed": False},
            {"id": "b", "JobStatus": 4, "removed": True},
            {"id": "c", "JobStatus": 3, "removed": True}]
    rows = cells(page_of(jobs, {(3, False): 1, (4, True): 1, (3, True): 1})).rows
    assert [row[2:4] for row in rows] == [["in the queue", "Removed"],
                                          ["left the queue", "Completed"],
                                          ["left the queue", "Removed"]]


def test_chart_bars_count_the_queue_by_status_and_the_jobs_that_left() -> None:
    tally = {(1, False): 4, (2, False): 10, (3, False): 1, (None, False): 2, (4, True): 7,
             (3, True): 1}
    assert status_counts(tally) == ({1: 4, 2: 10, 3: 1, None: 2}, {4: 7, 3: 1})
    chart = render_chart(tally)
    assert chart.startswith("<svg") and chart.endswith("</svg>")
    bars = re.findall(r'data-status="([^"]+)" data-count="(\d+)"', chart)
    assert bars == [("Idle", "4"), ("Running", "10"), ("Removed", "1"), ("unknown", "2"),
                    ("left", "8")]
    assert "Removed (JobStatus 3)" in chart
    assert "last JobStatus: Completed 7, Removed 1" in chart
    widths = [int(w) for w in re.findall(r'<rect [^>]*width="(\d+)"', chart)]
    assert widths[1] == max(widths)           # the longest bar is the largest count


def test_chart_without_jobs_says_so() -> None:
    assert render_chart({}) == '<p class="empty">No jobs yet.</p>'


def test_long_values_are_cut_in_the_cell_and_whole_on_hover() -> None:
    long = "x" * 5000
    shown, full = display_value("Cmd", long)
    assert len(shown) == SHORT_TEXT and shown.endswith("\u2026") and full == long
    page = page_of([{"id": "a", "Cmd": long, "Environment": long}])
    assert f'title="{long}"' in page
    assert f"<dd>{long}</dd>" in page          # the whole value in "other fields" too
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(1764700000))
    assert display_value("QDate", 1764700000) == (when, "QDate = 1764700000")
    assert f"<dd>1764700000 ({when})</dd>" in page_of([{"id": "a",
                                                        "EnteredCurrentStatus": 1764700000}])
    assert display_value("x", None) == ("null", "null")
    assert display_value("x", True) == ("true", "true")
    assert display_value("x", 12) == ("12", "12")


def test_page_is_self_contained_and_refreshes_itself() -> None:
    page = page_of(CLASSAD)
    assert not re.search(r'(src|href)="(https?:)?//', page)     # no external assets
    assert "<svg" in page and "<script>" in page and "fetch(location.href" in page
    assert '<noscript><meta http-equiv="refresh"' in page
    assert page.count('<div id="live"') == 1


def test_a_page_cut_at_its_row_limit_says_where_the_rest_are() -> None:
    page = render_page([{"id": "b"}], {(None, False): 2}, {}, 2, "/api/jobs/", now=0)
    assert 'Showing the newest 1 of 2 jobs; all are at <a href="/api/jobs/">' in page
    assert "Showing" not in page_of(CLASSAD)


def test_every_value_and_name_is_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    page = page_of([{"id": evil, "condorid": evil, "Owner": evil, evil: evil,
                     "JobStatus": evil}], {(None, False): 1})
    assert evil not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
