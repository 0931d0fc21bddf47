"""The development monitor's page in headless Chromium while a real pandad feeds it.

The DOM is read as the browser rendered it (scripts run, CSS applied), and the page is never
reloaded by the test: what changes on it as jobs arrive is the page's own refresh.
"""

import json
from pathlib import Path
from typing import Any, Dict

from pandad.dev.devmonitor import JOBS_PATH, DevMonitor
from pandad.wire import encode_add, encode_remove, encode_update
from tests.support import wait_until
from tests.support.chromium import Browser
from tests.support.pandad_process import PandadProcess

SCHEDD = "ap1.example.org"
LONG_ARGS = "--input /data/" + "run/" * 200 + "events.root"
# (ClassAd spelling, the 2014 monitor's): the page shows whichever pandad sent.
SPELLINGS = (("Owner", "owner"), ("Cmd", "cmd"), ("QDate", "submitted"))

# What the page shows, as rendered: headers, each row's cells, the chart's bars.
READ_PAGE = """(() => {
  const text = (e) => e.innerText.trim();
  const rows = [...document.querySelectorAll("#jobs tbody tr")];
  return {
    head: [...document.querySelectorAll("#jobs thead th")].map(text),
    rows: rows.map((r) => [...r.cells].map(text)),
    ids: rows.map((r) => r.dataset.id),
    bars: Object.fromEntries([...document.querySelectorAll("#chart .bar")].map(
      (g) => [g.dataset.status, Number(g.dataset.count)])),
    barWidths: Object.fromEntries([...document.querySelectorAll("#chart .bar")].map(
      (g) => [g.dataset.status, g.querySelector("rect").getBBox().width])),
    total: document.getElementById("total").innerText,
    marker: window.testMarker || null,
  };
})()"""


def job_id(n: int) -> str:
    return f"{SCHEDD}#{n}.0#1764700000"


def add(n: int, status: int = 1, args: str = "-n 1") -> bytes:
    return encode_add(job_id(n), f"{n}.0", [
        ("JobStatus", str(status)), ("Owner", '"alice"'), ("Cmd", '"/bin/sleep"'),
        ("QDate", str(1764700000 + n)), ("Args", json.dumps(args)),
        ("Iwd", '"/home/alice/run"')])


def column(page: Dict[str, Any], row: int, name: str) -> str:
    return page["rows"][row][page["head"].index(name)]


def test_page_in_chromium_follows_the_feed(tmp_path: Path) -> None:
    (tmp_path / "pandad").mkdir()
    with DevMonitor() as monitor, PandadProcess(tmp_path / "pandad", url=monitor.url) as pandad, \
            Browser(tmp_path) as browser:
        pandad.write(add(0, 2), add(1, 1), add(2, 1, LONG_ARGS))
        wait_until(lambda: len(monitor.jobs()) == 3, 20, message="the first jobs stored")
        stored = monitor.jobs()[job_id(0)]
        page_url = monitor.url[:-len(JOBS_PATH)] + "/"
        browser.open(page_url)
        page = browser.evaluate(READ_PAGE)

        # Columns under the names that arrived, whichever spelling that is.
        for spellings in SPELLINGS:
            arrived = [name for name in spellings if name in stored]
            assert len(arrived) == 1, (spellings, sorted(stored))
            other = set(spellings) - set(arrived)
            assert arrived[0] in page["head"] and not other & set(page["head"]), page["head"]
        assert page["head"][:4] == ["id", "condorid", "queue", "JobStatus"]
        assert page["ids"] == [job_id(2), job_id(1), job_id(0)]       # newest first
        assert [column(page, i, "JobStatus") for i in range(3)] == ["Idle", "Idle", "Running"]
        assert page["bars"] == {"Idle": 2, "Running": 1}
        assert page["barWidths"]["Idle"] > page["barWidths"]["Running"] > 0
        assert page["total"] == "3"

        # A long value is cut with an ellipsis as drawn, and whole in the hover title.
        cut = browser.evaluate(f"""(() => {{
          const row = document.querySelector('#jobs tr[data-id="{job_id(2)}"]');
          const cell = [...row.querySelectorAll(".v")].find((v) => v.title.length > 500);
          return {{title: cell.title, drawn: cell.clientWidth, whole: cell.scrollWidth,
                   rowHeight: row.getBoundingClientRect().height}};
        }})()""")
        assert cut["title"] == LONG_ARGS
        assert cut["whole"] > cut["drawn"] > 0
        assert cut["rowHeight"] < 60                  # the row stays one line high

        # The feed goes on; the page must follow without being reloaded, and what the reader
        # opened ("other fields" of job 2) stays open.
        browser.evaluate("window.testMarker = 'same document'")
        open_details = (f"document.querySelector('#jobs tr[data-id=\"{job_id(2)}\"] details')"
                        ".open")
        browser.evaluate(f"{open_details} = true")
        pandad.write(add(3, 1), add(4, 5), encode_update(job_id(0), [("JobStatus", "3")]),
                     encode_update(job_id(1), [("JobStatus", "4")]), encode_remove(job_id(1)))
        wait_until(lambda: len(monitor.jobs()) == 5 and monitor.jobs()[job_id(1)]["removed"],
                   20, message="the next jobs stored")
        page = browser.wait_for(f"(() => {{ const p = {READ_PAGE};"
                                f" return p.total === '5' && p.bars.left === 1 ? p : null; }})()",
                                timeout=20)
        assert page["marker"] == "same document"
        assert browser.evaluate(open_details) is True
        assert browser.evaluate("document.querySelectorAll('details[open]').length") == 1
        assert page["ids"] == [job_id(n) for n in reversed(range(5))]
        # JobStatus 3 (the schedd removed it; still in the queue) and a job that left the
        # queue (the feed sent DELETE) are different things on the page.
        assert column(page, 4, "JobStatus") == "Removed"
        assert column(page, 4, "queue") == "in the queue"
        assert column(page, 3, "JobStatus") == "Completed"
        assert column(page, 3, "queue") == "left the queue"
        assert page["bars"] == {"Idle": 2, "Held": 1, "Removed": 1, "left": 1}
        assert "Removed (JobStatus 3)" in browser.evaluate(
            "document.getElementById('chart').textContent")
        # The page asked for nothing but itself (no favicon, script or style file).
        assert set(monitor.request_counts()) <= {"GET 200", "POST 201", "PUT 200",
                                                 "DELETE 204"}, monitor.request_counts()
        browser.screenshot(tmp_path / "page.png")      # left for whoever reads a failure
