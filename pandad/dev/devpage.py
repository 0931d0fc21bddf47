"""The development monitor's page (``GET /``): pure functions from the stored jobs to HTML.

The page is one self-contained document (inline CSS, inline SVG, a small inline script; no
external assets), so it works offline. Its live part (``<div id="live">``) is what the script
fetches again every few seconds and swaps in; without JavaScript a meta refresh reloads it.

Columns are the names that arrived: pandad sends ClassAd spellings (``Owner``, ``Cmd``,
``QDate``) by default and the 2014 monitor's (``owner``, ``cmd``, ``submitted``) when
PANDA_ATTRIBUTE_MAP says so; the page shows whichever the stored jobs carry. A job's
``JobStatus`` 3 ("Removed", the schedd's state) and the monitor's own ``removed`` flag (a
DELETE came: the job left the queue) are shown apart.
"""

import html
import json
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

JOB_STATUS_NAMES = {1: "Idle", 2: "Running", 3: "Removed", 4: "Completed", 5: "Held",
                    6: "Transferring", 7: "Suspended", 10: "Preparing"}
# Chart order: the states a job passes through, then the ends.
_STATUS_ORDER = (10, 1, 2, 6, 7, 5, 4, 3)
_STATUS_COLOURS = {1: "#e0a526", 2: "#2b7bd6", 3: "#c0392b", 4: "#27ae60", 5: "#8e44ad",
                   6: "#16a085", 7: "#7f8c8d", 10: "#95a5a6"}
_UNKNOWN_COLOUR = "#bdc3c7"
_LEFT_COLOUR = "#34495e"

# Columns after id and condorid, each group in either spelling, when some job has it.
PREFERRED_COLUMNS: Tuple[Tuple[str, ...], ...] = (
    ("JobStatus",), ("Owner", "owner"), ("QDate", "submitted"), ("Cmd", "cmd"),
    ("Args", "Arguments"), ("JobPrio", "pri"), ("RemoteWallClockTime", "run_time"))
# Integer attributes holding seconds since the epoch, shown as local time.
TIME_ATTRIBUTES = frozenset({"QDate", "EnteredCurrentStatus", "JobStartDate",
                             "JobCurrentStartDate", "CompletionDate", "LastMatchTime"})
SHORT_TEXT = 80             # characters shown in a table cell; the whole value on hover
REFRESH_SECONDS = 2

# (JobStatus or None, removed flag) → jobs: what the store counts, for the chart.
Tally = Mapping[Tuple[Optional[int], bool], int]


def status_name(status: Optional[int]) -> str:
    if status is None:
        return "unknown"
    return JOB_STATUS_NAMES.get(status, str(status))


def job_status(job: Mapping[str, Any]) -> Optional[int]:
    status = job.get("JobStatus")
    if isinstance(status, bool) or not isinstance(status, (int, float)):
        return None
    return int(status)


def choose_columns(jobs: Sequence[Mapping[str, Any]]) -> List[str]:
    """id, condorid, then the preferred attributes present, under the spelling that arrived."""
    present = set()
    for job in jobs:
        present.update(job)
    columns = ["id", "condorid"]
    for group in PREFERRED_COLUMNS:
        columns.extend(name for name in group if name in present)
    return columns


def display_value(name: str, value: Any) -> Tuple[str, str]:
    """(what a cell shows, the whole value for its hover title)."""
    if value is None:
        return "null", "null"
    full = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if (name in TIME_ATTRIBUTES and isinstance(value, int) and not isinstance(value, bool)
            and 0 < value < 1 << 35):
        shown = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
        return shown, f"{name} = {value}"
    if len(full) > SHORT_TEXT:
        return full[:SHORT_TEXT - 1] + "\u2026", full
    return full, full


def status_counts(tally: Tally) -> Tuple[Dict[Optional[int], int], Dict[Optional[int], int]]:
    """(jobs in the queue by JobStatus, jobs that left the queue by their last JobStatus)."""
    queue: Dict[Optional[int], int] = {}
    left: Dict[Optional[int], int] = {}
    for (status, removed), count in tally.items():
        side = left if removed else queue
        side[status] = side.get(status, 0) + count
    return queue, left


def _ordered(statuses: Mapping[Optional[int], int]) -> List[Optional[int]]:
    known = [s for s in _STATUS_ORDER if s in statuses]
    other = sorted(s for s in statuses if s is not None and s not in _STATUS_ORDER)
    return known + other + ([None] if None in statuses else [])


def render_chart(tally: Tally) -> str:
    """Jobs by status as an inline SVG bar chart; jobs that left the queue are one more bar."""
    e = html.escape
    queue, left = status_counts(tally)
    bars: List[Tuple[str, str, int, str, str]] = []    # label, key, count, colour, hover
    for status in _ordered(queue):
        name = status_name(status)
        label = f"{name} (JobStatus 3)" if status == 3 else name
        hover = f"{queue[status]} jobs in the queue with JobStatus {status}"
        bars.append((label, name, queue[status],
                     _STATUS_COLOURS.get(status, _UNKNOWN_COLOUR), hover))
    if left:
        last = ", ".join(f"{status_name(s)} {left[s]}" for s in _ordered(left))
        bars.append(("left the queue", "left", sum(left.values()), _LEFT_COLOUR,
                     f"deleted by the feed; last JobStatus: {last}"))
    if not bars:
        return '<p class="empty">No jobs yet.</p>'
    most = max(count for _, _, count, _, _ in bars) or 1
    row, label_w, bar_w = 26, 170, 300
    parts = []
    for i, (label, key, count, colour, hover) in enumerate(bars):
        y = i * row + (8 if key == "left" else 0)
        width = max(2, round(bar_w * count / most))
        dash = ' stroke="#1b2631" stroke-dasharray="4 2"' if key == "left" else ""
        parts.append(
            f'<g class="bar" data-status="{e(key)}" data-count="{count}"><title>{e(hover)}'
            f'</title><text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{e(label)}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{width}" height="{row - 8}" rx="3"'
            f' fill="{colour}"{dash}/><text x="{label_w + width + 6}" y="{y + 17}"'
            f' class="n">{count}</text></g>')
    height = len(bars) * row + (8 if left else 0)
    return (f'<svg id="chart" role="img" aria-label="jobs by status" width="{label_w + bar_w + 60}"'
            f' height="{height}" viewBox="0 0 {label_w + bar_w + 60} {height}">'
            + "".join(parts) + "</svg>")


def _cell(name: str, job: Mapping[str, Any]) -> str:
    e = html.escape
    if name not in job:
        return '<td class="absent"></td>'
    value = job[name]
    if name == "JobStatus" and job_status(job) is not None:
        status = job_status(job)
        return (f'<td><span class="st" style="background:'
                f'{_STATUS_COLOURS.get(status, _UNKNOWN_COLOUR)}" title="JobStatus = {status}">'
                f'{e(status_name(status))}</span></td>')
    shown, full = display_value(name, value)
    kind = ' class="null"' if value is None else ""
    return f'<td{kind}><span class="v" title="{e(full)}">{e(shown)}</span></td>'


def _whole(name: str, value: Any) -> str:
    """A value written out in full; a time also as local time."""
    shown, full = display_value(name, value)
    if full == f"{name} = {value}":
        return f"{value} ({shown})"
    return full


def _other_fields(job: Mapping[str, Any], columns: Sequence[str]) -> str:
    e = html.escape
    others = sorted(k for k in job if k not in columns and k != "removed")
    if not others:
        return "<td></td>"
    items = "".join(f"<dt>{e(k)}</dt><dd>{e(_whole(k, job[k]))}</dd>" for k in others)
    return (f'<td><details data-id="{e(str(job.get("id")))}"><summary>{len(others)} more'
            f'</summary><dl>{items}</dl></details></td>')


def render_table(jobs: Sequence[Mapping[str, Any]]) -> str:
    e = html.escape
    columns = choose_columns(jobs)
    head_cells = [f"<th>{e(name)}</th>" for name in columns]
    rows = []
    for job in jobs:
        gone = bool(job.get("removed"))
        queue = ('<td><span class="left" title="the feed sent DELETE: the job left the'
                 ' schedd&#x27;s queue">left the queue</span></td>' if gone
                 else '<td class="inq">in the queue</td>')
        cells = [_cell(name, job) for name in columns]
        cells.insert(2, queue)
        rows.append(f'<tr data-id="{e(str(job.get("id")))}"'
                    f'{" class=gone" if gone else ""}>{"".join(cells)}'
                    f"{_other_fields(job, columns)}</tr>")
    head = head_cells[:2] + ["<th>queue</th>"] + head_cells[2:] + ["<th>other fields</th>"]
    return (f'<div class="scroll"><table id="jobs"><thead><tr>{"".join(head)}</tr></thead>'
            f"<tbody>\n" + "\n".join(rows) + "</tbody></table></div>")


def render_live(jobs: Sequence[Mapping[str, Any]], tally: Tally, requests: Mapping[str, int],
                total: int, jobs_path: str, now: float) -> str:
    """The part of the page the refresh replaces: summary, chart, requests and the table."""
    e = html.escape
    queue, left = status_counts(tally)
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    request_items = "".join(f'<li><span class="m">{e(name)}</span> {count}</li>'
                            for name, count in sorted(requests.items()))
    shown = "" if len(jobs) >= total else (
        f'<p class="note">Showing the newest {len(jobs)} of {total} jobs; all are at'
        f' <a href="{e(jobs_path)}">{e(jobs_path)}</a>.</p>')
    return (
        f'<div id="live" data-total="{total}"><p class="summary"><b id="total">{total}</b> jobs:'
        f' <b>{sum(queue.values())}</b> in the queue, <b>{sum(left.values())}</b> left the'
        f' queue <span class="stamp">as of {stamp}</span></p>\n'
        f'<div class="top"><section><h2>Jobs by status</h2>{render_chart(tally)}</section>'
        f'<section><h2>Requests</h2><ul id="requests">{request_items or "<li>none yet</li>"}'
        f"</ul></section></div>\n<h2>Jobs, newest first</h2>\n{shown}{render_table(jobs)}"
        "</div>")


_STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b2631;
background:#f4f6f8}
header{background:#1b2631;color:#fff;padding:10px 20px;display:flex;align-items:center;gap:16px}
header h1{font-size:18px;margin:0;font-weight:600;flex:1}
header label{font-size:13px;opacity:.85}
main{padding:12px 20px}
h2{font-size:13px;text-transform:uppercase;letter-spacing:.05em;color:#566573;margin:14px 0 6px}
.summary{font-size:16px;margin:4px 0}.stamp{color:#808b96;font-size:12px;margin-left:8px}
.top{display:flex;flex-wrap:wrap;gap:12px 40px}
section{background:#fff;border-radius:6px;padding:4px 14px 10px;box-shadow:0 1px 2px #0002}
svg text{font-size:13px;fill:#1b2631}svg .n{font-weight:600}
#requests{list-style:none;padding:0;margin:0;columns:2}#requests .m{color:#566573;
display:inline-block;min-width:7em}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0002;width:100%}
th{background:#eaecee;text-align:left;font-weight:600;padding:5px 8px;white-space:nowrap}
.scroll{overflow-x:auto}
td{padding:4px 7px;border-top:1px solid #eaecee;vertical-align:top}
tbody tr:hover{background:#f8f9f9}
.v{display:inline-block;max-width:15em;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap;vertical-align:top}
td:first-child .v{max-width:12em;font-family:ui-monospace,monospace;font-size:12px}
.null{color:#aab7b8;font-style:italic}
.st{color:#fff;border-radius:10px;padding:1px 8px;font-size:12px;white-space:nowrap}
.left{border:1px dashed #34495e;color:#34495e;border-radius:10px;padding:0 7px;
font-size:12px;white-space:nowrap}
.inq{color:#808b96;font-size:12px;white-space:nowrap}
tr.gone td{color:#808b96}tr.gone .st{opacity:.6}
details summary{cursor:pointer;color:#2b7bd6;white-space:nowrap}
dl{display:grid;grid-template-columns:max-content minmax(10em,48em);gap:2px 10px;margin:4px 0}
dt{color:#566573;font-family:ui-monospace,monospace;font-size:12px}
dd{margin:0;white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,monospace;
font-size:12px;max-height:12em;overflow:auto}
.empty,.note{color:#808b96}.offline{color:#c0392b}
"""

# Fetch the page again and swap in its live part; details left open stay open.
_SCRIPT = """
(function () {
  var auto = document.getElementById("auto"), state = document.getElementById("state");
  function later() { setTimeout(tick, %d); }
  function tick() {
    if (!auto.checked) { return later(); }
    var box = document.getElementById("live"), open = [];
    box.querySelectorAll("details[open]").forEach(function (d) { open.push(d.dataset.id); });
    fetch(location.href, {cache: "no-store"}).then(function (r) {
      if (!r.ok) { throw new Error(r.status); }
      return r.text();
    }).then(function (text) {
      var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
      if (fresh) {
        box.replaceWith(fresh);
        fresh.querySelectorAll("details").forEach(function (d) {
          if (open.indexOf(d.dataset.id) >= 0) { d.open = true; }
        });
      }
      state.textContent = ""; state.className = "";
    }).catch(function () {
      state.textContent = "monitor not answering"; state.className = "offline";
    }).then(later);
  }
  later();
})();
""" % (REFRESH_SECONDS * 1000)


def render_page(jobs: Sequence[Mapping[str, Any]], tally: Tally, requests: Mapping[str, int],
                total: int, jobs_path: str, now: Optional[float] = None) -> str:
    """The whole page; every value that arrived is escaped."""
    live = render_live(jobs, tally, requests, total, jobs_path,
                       time.time() if now is None else now)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        # An empty icon: the browser asks for nothing else (no /favicon.ico 404 in the counts).
        '<link rel="icon" href="data:,">'
        f"<title>pandad devmonitor</title><noscript><meta http-equiv=\"refresh\""
        f' content="{REFRESH_SECONDS * 3}"></noscript><style>{_STYLE}</style></head><body>\n'
        "<header><h1>pandad development monitor</h1><span id=\"state\"></span>"
        '<label><input type="checkbox" id="auto" checked> live</label></header>\n'
        f"<main>{live}</main>\n<script>{_SCRIPT}</script>\n</body></html>\n")
