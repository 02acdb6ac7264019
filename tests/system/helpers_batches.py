"""Helpers for the CSV batch system tests (test_batches.py), after the
contract in docs/batches.md.

Only black-box means: the HTTP API, psql on the module's database and the
sim provider's dial log. Everything that waits has a timeout.
"""

from __future__ import annotations

import csv
import io
import random
import re
import uuid
from typing import Iterable, Sequence

import requests

from harness import Api, wait_until
from helpers_pipeline import SCENARIO

RESULT_COLUMNS = ["call_id", "status", "final_state", "outcome", "goal_completed", "duration_s",
                  "cost_micros", "ended_at", "error", "attempts",
                  "recording_duration_s", "recording_sha256", "recording_deleted_at"]  # docs/recordings.md
COUNT_KEYS = ["queued", "dialing", "connected", "completed", "failed", "canceled"]
FINAL_KEYS = ["completed", "no_answer", "busy", "voicemail_detected", "invalid_number",
              "caller_id_unauthorized", "provider_error", "internal_error", "canceled", "dnc_blocked"]
BATCH_STATUSES = {"validating", "scheduled", "running", "paused", "completed", "canceled"}
BATCH_KEYS = {"id", "status", "scenario", "pacing_per_min", "start_at", "caller_id", "file_name", "columns",
              "total_rows", "accepted_rows", "rejected_rows", "counts", "final_states", "success_rate",
              "goal_completion_rate", "created_at", "started_at", "finished_at"}

BOM = b"\xef\xbb\xbf"


# --------------------------------------------------------------------- values


def phones(digits: Iterable[int]) -> list[str]:
    """Distinct possible Spanish mobiles (+346 and 8 digits), the i-th ending in digits[i]."""
    out: list[str] = []
    seen: set[str] = set()
    for d in digits:
        while True:
            p = f"+346{random.randint(0, 9_999_999):07d}{d}"
            if p not in seen:
                seen.add(p)
                out.append(p)
                break
    return out


def spaced(e164: str) -> str:
    """+34612345670 -> '+34 612-34.56 70' (separators the contract says are dropped)."""
    n = e164[3:]
    return f"+34 {n[:3]}-{n[3:5]}.{n[5:7]} {n[7:]}"


def quote(cell: str) -> str:
    """RFC 4180 encoding of one cell for an upload (quoted only when it has to be)."""
    if any(ch in cell for ch in ',"\r\n') or cell[:1] == " " or cell[-1:] == " ":
        return '"' + cell.replace('"', '""') + '"'
    return cell


def csv_text(rows: Sequence[Sequence[str]], eol: str = "\r\n") -> str:
    return "".join(",".join(quote(c) for c in row) + eol for row in rows)


# results.csv (docs/batches.md): neutralisation, then quoting

_SAFE_NUMBER = re.compile(r"[+-][0-9][0-9 .()\-]*\Z")


def neutralised(cell: str) -> str:
    if cell[:1] in ("=", "+", "-", "@", "\t", "\r") and not _SAFE_NUMBER.match(cell):
        return "'" + cell
    return cell


def results_cell(cell: str) -> str:
    """How an uploaded cell must appear, raw, in results.csv."""
    return quote(neutralised(cell))


# --------------------------------------------------------------------- upload


def upload(api: Api, body: bytes | str, *, multipart: bool = False, scenario: str | None = SCENARIO,
           pacing: int | str | None = None, start_at: str | None = None, caller_id: str | None = None,
           file_name: str | None = None, filename: str = "contacts.csv", idempotency_key: str | None = None,
           content_type: str = "text/csv", headers: dict | None = None,
           calling_windows: str | None = None, spend_cap: int | str | None = None) -> requests.Response:
    """POST /v1/batches: a text/csv body with the settings as query parameters,
    or multipart/form-data with part `file` and the settings as text fields."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    settings = {"scenario": scenario, "pacing_per_min": pacing, "start_at": start_at, "caller_id": caller_id,
                "calling_windows": calling_windows, "spend_cap_micros": spend_cap}
    settings = {k: str(v) for k, v in settings.items() if v is not None}
    hdrs = dict(headers or {})
    if idempotency_key is not None:
        hdrs["Idempotency-Key"] = idempotency_key
    if multipart:
        files = {"file": (filename, body, "text/csv")}
        r = api.post("/v1/batches", data=settings, files=files, headers=hdrs, timeout=30)
    else:
        if file_name is not None:
            settings["file_name"] = file_name
        hdrs["Content-Type"] = content_type
        r = api.post("/v1/batches", params=settings, data=body, headers=hdrs, timeout=30)
    r.od_api = api  # assert_created follows the batch through its validation
    return r


def assert_batch_shape(b: dict, with_errors: bool = True) -> dict:
    keys = BATCH_KEYS | ({"row_errors"} if with_errors else set())
    missing = keys - set(b)
    assert not missing, f"batch object lacks {sorted(missing)}: {b}"
    if not with_errors:
        assert "row_errors" not in b, f"list items carry no row_errors: {b}"
    uuid.UUID(b["id"])
    assert b["status"] in BATCH_STATUSES, b
    assert list(b["counts"]) == COUNT_KEYS or set(b["counts"]) == set(COUNT_KEYS), b["counts"]
    assert set(b["final_states"]) == set(FINAL_KEYS), b["final_states"]
    if b["status"] == "validating" or (b["status"] in ("paused", "canceled") and b["accepted_rows"] == 0
                                       and b["rejected_rows"] == 0):
        # rows not checked yet: nothing accepted or refused so far (docs/batches.md, "Validation")
        assert (b["accepted_rows"], b["rejected_rows"]) == (0, 0), b
        assert b.get("row_errors", []) == [] and not any(b["counts"].values()), b
    else:
        assert b["total_rows"] == b["accepted_rows"] + b["rejected_rows"], b
    return b


def assert_counts_add_up(b: dict) -> None:
    """counts sum to accepted_rows; final_states sum to the final statuses."""
    c, f = b["counts"], b["final_states"]
    assert sum(c.values()) == b["accepted_rows"], f"counts {c} do not sum to accepted_rows {b['accepted_rows']}"
    assert sum(f.values()) == c["completed"] + c["failed"] + c["canceled"], (
        f"final_states {f} do not sum to completed+failed+canceled of {c}")
    assert all(isinstance(v, int) and v >= 0 for v in (*c.values(), *f.values())), b


def assert_answered(r: requests.Response) -> dict:
    """The 201 of an upload: the batch stored, validating (docs/batches.md)."""
    assert r.status_code == 201, f"expected 201, got {r.status_code}: {r.text[:800]}"
    assert r.headers.get("content-type", "").split(";")[0].strip() == "application/json", r.headers
    b = r.json()
    assert_batch_shape(b)
    loc = r.headers.get("location", "")
    assert loc.endswith(f"/v1/batches/{b['id']}"), f"Location {loc!r} for batch {b['id']}"
    assert b["status"] == "validating", f"a new batch is validating: {b}"
    assert b["total_rows"] > 0 and b["finished_at"] is None and b["started_at"] is None, b
    return b


def wait_validated(api: Api, bid: str, timeout: float = 60) -> dict:
    """Polls the batch until it is no longer validating; returns it."""
    return wait_batch(api, bid, lambda b: b["status"] != "validating", timeout, what=f"batch {bid} validated")


def assert_created(r: requests.Response, api: Api | None = None) -> dict:
    """assert_answered, then the batch once validated (scheduled, or already
    running or completed: its calls may start at once), polled with `api`
    (default: the key that uploaded, which then needs sessions:read)."""
    answer = assert_answered(r)
    b = wait_validated(api or r.od_api, answer["id"])
    assert b["status"] in ("scheduled", "running", "completed"), f"validated batch: {b}"
    assert b["total_rows"] == answer["total_rows"], (answer, b)
    assert_counts_add_up(b)
    return b


def row_errors(b: dict) -> list[tuple[int, str]]:
    return [(e["row"], e["code"]) for e in b["row_errors"]]


# ----------------------------------------------------------------------- read


def get_batch(api: Api, bid: str) -> dict:
    r = api.get(f"/v1/batches/{bid}")
    assert r.status_code == 200, f"GET /v1/batches/{bid}: {r.status_code} {r.text[:500]}"
    return assert_batch_shape(r.json())


def wait_batch(api: Api, bid: str, pred=None, timeout: float = 60, what: str = "") -> dict:
    """Poll GET /v1/batches/{id} until pred(batch) (default: finished_at set
    and status completed or canceled); counts must add up at every poll."""
    pred = pred or (lambda b: b["finished_at"] is not None and b["status"] in ("completed", "canceled"))
    last: dict = {}

    def check():
        nonlocal last
        last = get_batch(api, bid)
        assert_counts_add_up(last)
        return pred(last)

    try:
        wait_until(check, timeout, 0.1, what=what or f"batch {bid}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; last seen: {str({k: last.get(k) for k in ('status', 'counts', 'final_states', 'finished_at')})}") from None
    return last


def list_batches(api: Api, **params) -> dict:
    r = api.get("/v1/batches", params=params)
    assert r.status_code == 200, f"GET /v1/batches: {r.status_code} {r.text[:500]}"
    body = r.json()
    assert set(body) >= {"data", "next_cursor"}, body
    return body


def batch_calls(api: Api, bid: str) -> list[dict]:
    """Every call of the batch, from GET /v1/calls?batch_id= (all pages)."""
    out: list[dict] = []
    cursor = None
    for _ in range(1000):
        params = {"batch_id": bid, "limit": 200}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/v1/calls", params=params)
        assert r.status_code == 200, f"GET /v1/calls?batch_id={bid}: {r.status_code} {r.text[:500]}"
        body = r.json()
        out += body["data"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("GET /v1/calls pagination does not end")


def results_csv(api: Api, bid: str) -> tuple[str, list[list[str]]]:
    """GET results.csv: (raw text, records parsed with Python's csv module)."""
    r = api.get(f"/v1/batches/{bid}/results.csv", timeout=30)
    assert r.status_code == 200, f"results.csv: {r.status_code} {r.text[:500]}"
    ctype = r.headers.get("content-type", "").replace(" ", "").lower()
    assert ctype == "text/csv;charset=utf-8", f"results.csv Content-Type {ctype!r}"
    raw = r.content.decode("utf-8")
    return raw, list(csv.reader(io.StringIO(raw, newline="")))


def db_dials(system, bid: str) -> list[tuple[str, float | None]]:
    """(call id, dialed_at as epoch seconds or None) of the batch's calls, from PostgreSQL."""
    rows = system.rows("select id, coalesce(extract(epoch from dialed_at)::text, '') from calls "
                       f"where batch_id = '{uuid.UUID(bid)}' order by id")
    return [(r[0], float(r[1]) if r[1] else None) for r in rows]


def dialed_count(system, bid: str) -> int:
    return int(system.scalar(f"select count(*) from calls where batch_id = '{uuid.UUID(bid)}' "
                             "and dialed_at is not null"))


def assert_no_batch_created(api: Api, before: list[str]) -> None:
    ids = [b["id"] for b in list_batches(api, limit=200)["data"]]
    assert ids == before, f"a failed upload created a batch: {sorted(set(ids) - set(before))}"

