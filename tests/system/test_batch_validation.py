"""A batch is validated after the answer (docs/batches.md, "Validation").

POST /v1/batches answers 201 once the file's structure is checked and the
file is stored, with the batch `validating`; its rows are checked and its
calls created right after, in one transaction. These tests use files large
enough (tens of thousands of rows, seconds of validation) that the requests
made right after the answer land while the batch is still validating, and
they check that no accepted upload is lost: pause, resume and cancel apply to
a validating batch, a draining ingress finishes its validations, and a batch
whose ingress was killed is validated by the next one.
"""

from __future__ import annotations

import time
import uuid

import pytest

from harness import wait_until
from helpers_batches import (assert_answered, assert_counts_add_up, csv_text, dialed_count, get_batch,
                             results_csv, upload, wait_batch, wait_validated)
from helpers_pipeline import NO_LIMITS, assert_problem, in_seconds

ROWS = 40_000
PACE = 600


def _contacts(n: int, bad_every: int = 0) -> tuple[str, list[str]]:
    """n rows of distinct Spanish mobiles with a name; every bad_every-th row's phone is invalid."""
    base = uuid.uuid4().int % 90_000_000
    rows, phones = [["phone", "name"]], []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            rows.append(["not a number", f"n{i}"])
        else:
            ph = f"+346{(base + i) % 100_000_000:08d}"
            phones.append(ph)
            rows.append([ph, f"n{i}"])
    return csv_text(rows), phones


def _validated(b: dict) -> bool:
    return b["accepted_rows"] + b["rejected_rows"] == b["total_rows"]


def _batch_db(system, bid: str) -> tuple[int, int, int, int]:
    """(calls, distinct phones, rows, stored files) of the batch, from PostgreSQL."""
    bid = str(uuid.UUID(bid))
    return (int(system.scalar(f"select count(*) from calls where batch_id = '{bid}'")),
            int(system.scalar(f"select count(distinct phone) from calls where batch_id = '{bid}'")),
            int(system.scalar(f"select count(*) from batch_rows where batch_id = '{bid}'")),
            int(system.scalar(f"select count(*) from batch_uploads where batch_id = '{bid}'")))


@pytest.fixture(scope="module")
def project(system):
    return system.new_project(pacing=PACE, **NO_LIMITS)


def test_answer_then_validation(system, project):
    body, phones = _contacts(ROWS, bad_every=1000)
    t0 = time.monotonic()
    answer = assert_answered(upload(project.api, body, pacing=PACE, start_at=in_seconds(3600)))
    answered_s = time.monotonic() - t0
    bid = answer["id"]
    assert answer["total_rows"] == ROWS and answer["accepted_rows"] == 0 and answer["row_errors"] == [], answer
    # the rows are not there yet: results.csv says so instead of an empty file
    r = project.api.get(f"/v1/batches/{bid}/results.csv")
    assert_problem(r, 409, "batch_validating")
    assert get_batch(project.api, bid)["status"] == "validating"

    b = wait_validated(project.api, bid)
    validated_s = time.monotonic() - t0
    assert b["status"] == "scheduled", b
    assert (b["accepted_rows"], b["rejected_rows"]) == (len(phones), ROWS // 1000), b
    assert [(e["row"], e["code"]) for e in b["row_errors"]] == [(i, "invalid_phone")
                                                               for i in range(1000, ROWS + 1, 1000)], b["row_errors"]
    assert b["counts"]["queued"] == len(phones), b["counts"]
    assert _batch_db(system, bid) == (len(phones), len(phones), ROWS, 0), "rows, calls, or the stored file"
    _, records = results_csv(project.api, bid)
    error = records[0].index("error")   # the recording columns follow it
    assert len(records) == ROWS + 1 and records[1000][error] == "invalid_phone", records[1000]
    print(f"{ROWS} rows: answered in {answered_s:.2f} s, validated in {validated_s:.2f} s")
    project.api.post(f"/v1/batches/{bid}/cancel")


def test_pause_then_resume_while_validating(system, project):
    body, phones = _contacts(ROWS)
    bid = assert_answered(upload(project.api, body, pacing=PACE))["id"]
    r = project.api.post(f"/v1/batches/{bid}/pause")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "paused", r.json()
    # resumed and paused again while still validating: back to validating, then paused
    r = project.api.post(f"/v1/batches/{bid}/resume")
    assert r.status_code == 200 and r.json()["status"] == "validating", r.text
    r = project.api.post(f"/v1/batches/{bid}/pause")
    assert r.status_code == 200 and r.json()["status"] == "paused", r.text

    b = wait_batch(project.api, bid, _validated, 60, what="paused batch validated")
    assert b["status"] == "paused" and b["accepted_rows"] == len(phones), b
    time.sleep(2)  # a paused batch dials nothing, also once its calls exist
    assert dialed_count(system, bid) == 0, "a batch paused while validating was dialed"

    r = project.api.post(f"/v1/batches/{bid}/resume")
    assert r.status_code == 200 and r.json()["status"] in ("scheduled", "running"), r.text
    wait_until(lambda: dialed_count(system, bid) >= 3, 30, 0.1, what="the resumed batch dials")
    r = project.api.post(f"/v1/batches/{bid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text


def test_cancel_while_validating(system, project):
    body, phones = _contacts(ROWS)
    bid = assert_answered(upload(project.api, body, pacing=PACE))["id"]
    r = project.api.post(f"/v1/batches/{bid}/cancel")
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    b = wait_batch(project.api, bid, _validated, 60, what="canceled batch validated")
    assert b["status"] == "canceled" and b["finished_at"] is not None, b
    n = len(phones)
    assert b["accepted_rows"] == n and b["counts"]["canceled"] == n and b["final_states"]["canceled"] == n, b
    assert_counts_add_up(b)
    time.sleep(1)
    assert dialed_count(system, bid) == 0, "a batch canceled while validating was dialed"
    _, records = results_csv(project.api, bid)
    assert len(records) == n + 1 and {rec[3] for rec in records[1:]} == {"canceled"}, records[:3]


def test_draining_ingress_finishes_its_validation(system, project):
    body, phones = _contacts(ROWS)
    bid = assert_answered(upload(project.api, body, pacing=PACE, start_at=in_seconds(3600)))["id"]
    ingress = system.services["ingress"]
    rc = ingress.term(timeout=60)
    assert rc == 0, f"ingress exited {rc} after SIGTERM\n{ingress.log_tail(20)}"
    # validated before it exited: nothing was left for another copy
    assert system.scalar(f"select validated_at is not null from batches where id = '{bid}'") == "t"
    ingress.start(timeout=30)
    b = get_batch(project.api, bid)
    assert b["status"] == "scheduled" and b["accepted_rows"] == len(phones), b
    assert _batch_db(system, bid) == (len(phones), len(phones), ROWS, 0)
    project.api.post(f"/v1/batches/{bid}/cancel")


def test_validation_taken_over_after_ingress_killed(system, project):
    body, phones = _contacts(ROWS)
    bid = assert_answered(upload(project.api, body, pacing=PACE, start_at=in_seconds(3600)))["id"]
    ingress = system.services["ingress"]
    ingress.kill9()
    assert system.scalar(f"select validated_at is null from batches where id = '{bid}'") == "t", \
        "the validation ended before the kill: this test needs a larger file"
    assert _batch_db(system, bid) == (0, 0, 0, 1), "a killed validation left rows or calls behind"
    ingress.start(timeout=30)
    # the dead ingress's lease (30 s + 100 µs a row) runs out; time passes here in one statement
    system.scalar(f"update batches set import_lease = now() - interval '1 second' where id = '{bid}' returning 1")
    b = wait_validated(project.api, bid, timeout=60)
    assert b["status"] == "scheduled" and b["accepted_rows"] == len(phones), b
    assert _batch_db(system, bid) == (len(phones), len(phones), ROWS, 0), "each row's call exactly once"
    assert any("taking over its validation" in str(line.get("msg", "")) for line in ingress.log_lines()), \
        ingress.log_tail(20)
    project.api.post(f"/v1/batches/{bid}/cancel")
