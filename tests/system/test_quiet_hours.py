"""Quiet hours per recipient (docs/quiet-hours.md): calling windows in the
recipient's local time, from the number's time zones (libphonenumber's map),
applied by the scheduler at dispatch with the system tzdata.

The windows are read on the scheduler's test clock: OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S
(and the dialer's, OUTDIAL_DIALER_TEST_CLOCK_OFFSET_S, whose claim reads them again)
(seconds added to the clock of the windows only; pacing and due times keep
the real clock), so "it is 20:59 in New York" needs no waiting. Each test
that needs a moment restarts the scheduler with its offset (set_clock).
od_window_next_open, the pure function behind the decision, is tested with
fixed instants first."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from harness import wait_until
from helpers_batches import assert_created, csv_text, upload

DAILY_9_21 = '[{"days":"mon-sun","from":"09:00","to":"21:00"}]'
DAILY_9_20 = '[{"days":"mon-sun","from":"09:00","to":"20:00"}]'
WEEKDAYS_9_17 = '[{"days":"mon-fri","from":"09:00","to":"17:00"}]'
ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
NY = "+12125550100"          # America/New_York; ends in 0: the sim completes it
SYDNEY = "+61291234560"      # Australia/Sydney (area 02)
PERTH_OR_ADELAIDE = "+61891234560"  # area 08: Australia/Adelaide and Australia/Perth


def set_clock(system, local: str) -> None:
    """Restarts the scheduler and the dialer (whose claim reads the windows again) with their windows'
    clock reading `local` (ISO 8601 with offset) now (to the second: the offset is whole seconds, so
    bounds on hold lengths allow a few)."""
    offset = round(datetime.fromisoformat(local).timestamp() - time.time())
    system.scheduler.env["OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S"] = str(offset)
    system.dialer.env["OUTDIAL_DIALER_TEST_CLOCK_OFFSET_S"] = str(offset)
    system.scheduler.restart()
    system.dialer.restart()


def windows_project(system, windows: str | None):
    p = system.new_project()
    if windows is not None:
        system.ctl("project", "set", p.id, "--calling-windows", windows, json_out=False)
    return p


def post(p, phone: str, **body) -> dict:
    r = p.api.create_call(phone, **body)
    assert r.status_code == 202, r.text
    return r.json()


def held(system, p, call_id: str, timeout: float = 15) -> dict:
    """Waits until the scheduler held the call for its window; returns the call."""
    last = {}

    def check():
        nonlocal last
        last = p.admin.call(call_id)
        return (last["calling_window"] or {}).get("held_until") is not None

    wait_until(check, timeout, what=f"call {call_id} held by its calling window")
    assert last["status"] == "queued", last
    assert system.dial_count(call_id) == 0
    return last


def due_in_s(system, call_id: str) -> float:
    return float(system.scalar(f"select extract(epoch from due_at - now()) from calls where id = '{call_id}'"))


# ---------------------------------------------------------------- the window function, fixed instants


def next_open(system, windows: str, zones: list[str], at: str) -> str | None:
    arr = "{" + ",".join(zones) + "}"
    v = system.scalar("select to_char(od_window_next_open(w, z, a) at time zone 'UTC', "
                      "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                      f"from (select '{windows}'::jsonb w, '{arr}'::text[] z, '{at}'::timestamptz a) x")
    return v or None


def canon(windows: str) -> str:
    """The canonical form od_dispatch reads (what od_window_parse stores)."""
    out = []
    for w in json.loads(windows):
        days = w["days"]
        if days == "mon-sun":
            days = ALL_DAYS
        elif days == "mon-fri":
            days = ALL_DAYS[:5]
        else:
            days = days.split(",")
        out.append({"days": days, "from": w["from"], "to": w["to"]})
    return json.dumps(out)


@pytest.mark.parametrize("windows, zones, at, want", [
    # a US number at 20:59 and at 21:01 local time, window to 21:00
    (DAILY_9_21, ["America/New_York"], "2026-03-04T20:59:00-05:00", "2026-03-05T01:59:00Z"),
    (DAILY_9_21, ["America/New_York"], "2026-03-04T21:00:00-05:00", "2026-03-05T14:00:00Z"),
    (DAILY_9_21, ["America/New_York"], "2026-03-04T21:01:00-05:00", "2026-03-05T14:00:00Z"),
    # held over the US March change (Sun 2026-03-08 02:00 EST -> 03:00 EDT): opens 09:00 EDT
    (DAILY_9_20, ["America/New_York"], "2026-03-07T20:30:00-05:00", "2026-03-08T13:00:00Z"),
    (DAILY_9_20, ["America/New_York"], "2026-03-08T08:59:00-04:00", "2026-03-08T13:00:00Z"),
    # held over the EU October change (Sun 2026-10-25 03:00 CEST -> 02:00 CET): opens 09:00 CET
    (DAILY_9_20, ["Europe/Berlin"], "2026-10-24T20:30:00+02:00", "2026-10-25T08:00:00Z"),
    (DAILY_9_20, ["Europe/Madrid"], "2026-10-25T08:30:00+01:00", "2026-10-25T08:00:00Z"),
    # weekdays only: Friday evening waits for Monday
    (WEEKDAYS_9_17, ["Europe/Berlin"], "2026-01-16T17:00:00+01:00", "2026-01-19T08:00:00Z"),
    # an ambiguous number: open only when it is open in both zones (Adelaide +10:30, Perth +8 in January)
    (WEEKDAYS_9_17, ["Australia/Adelaide", "Australia/Perth"], "2026-01-14T00:30:00Z", "2026-01-14T01:00:00Z"),
    (WEEKDAYS_9_17, ["Australia/Adelaide", "Australia/Perth"], "2026-01-14T03:00:00Z", "2026-01-14T03:00:00Z"),
    (WEEKDAYS_9_17, ["Australia/Adelaide", "Australia/Perth"], "2026-01-14T06:30:00Z", "2026-01-15T01:00:00Z"),
    # zones whose windows never meet: no opening
    ('[{"days":"mon","from":"09:00","to":"10:00"}]', ["Asia/Tokyo", "America/New_York"],
     "2026-01-14T00:00:00Z", None),
    # no zone known (libphonenumber's Etc/Unknown): the windows apply in UTC
    (DAILY_9_20, ["Etc/Unknown"], "2026-01-14T21:00:00Z", "2026-01-15T09:00:00Z"),
    # "to": "24:00" is the end of the day; a wrapping day range
    ('[{"days":"sat,sun","from":"22:00","to":"24:00"}]', ["UTC"], "2026-01-17T23:59:00Z", "2026-01-17T23:59:00Z"),
    ('[{"days":"sat,sun","from":"22:00","to":"24:00"}]', ["UTC"], "2026-01-18T23:59:59.999Z", "2026-01-18T23:59:59Z"),
    ('[{"days":"sat,sun","from":"22:00","to":"24:00"}]', ["UTC"], "2026-01-19T00:00:00Z", "2026-01-24T22:00:00Z"),
])
def test_window_next_open(system, windows, zones, at, want):
    assert next_open(system, canon(windows), zones, at) == want


# ---------------------------------------------------------------- the scheduler, end to end


def test_us_number_at_2059_goes_at_2101_waits(system):
    p = windows_project(system, DAILY_9_21)
    set_clock(system, "2026-03-04T20:59:00-05:00")  # a Wednesday in New York
    a = post(p, NY)
    final = p.wait_final(a["id"])
    assert final["final_state"] == "completed", final
    assert final["calling_window"] == {
        "source": "project", "zones": ["America/New_York"], "held_until": None,
        "windows": [{"days": ALL_DAYS, "from": "09:00", "to": "21:00"}]}, final

    set_clock(system, "2026-03-04T21:01:00-05:00")
    b = post(p, NY)
    c = held(system, p, b["id"])
    assert c["calling_window"]["held_until"] == "2026-03-05T14:00:00.000Z", c  # 09:00 EST next morning
    assert c["calling_window"]["zones"] == ["America/New_York"]
    assert 11 * 3600 + 50 * 60 < due_in_s(system, b["id"]) <= 11 * 3600 + 59 * 60 + 5, "held ~11 h 59 min"
    time.sleep(2)
    assert p.admin.call(b["id"])["status"] == "queued" and system.dial_count(b["id"]) == 0
    assert p.api.post(f"/v1/calls/{b['id']}/cancel").status_code == 200


def test_held_call_dispatches_when_window_opens_on_dst_day(system):
    """Sunday 2026-03-08, the US March change: 08:59:45 EDT. Read as EST it
    would be 07:59:45 and the call would wait an hour more."""
    p = windows_project(system, DAILY_9_20)
    set_clock(system, "2026-03-08T08:59:45-04:00")
    t0 = time.time()
    a = post(p, NY)
    c = held(system, p, a["id"], timeout=8)
    assert c["calling_window"]["held_until"] == "2026-03-08T13:00:00.000Z", c
    final = p.wait_final(a["id"], timeout=40)
    assert final["final_state"] == "completed", final
    waited = time.time() - t0
    assert 3 < waited < 35, f"dispatched {waited:.1f} s after the post: at the window's opening"


def test_held_over_the_march_change(system):
    p = windows_project(system, DAILY_9_20)
    set_clock(system, "2026-03-07T20:30:00-05:00")  # Saturday evening, EST
    a = post(p, NY)
    c = held(system, p, a["id"])
    assert c["calling_window"]["held_until"] == "2026-03-08T13:00:00.000Z", c  # 09:00 EDT
    # 11 h 30 min of real time (the night is an hour short), not 12 h 30 min
    assert 11 * 3600 + 20 * 60 < due_in_s(system, a["id"]) <= 11 * 3600 + 30 * 60 + 5
    assert p.api.post(f"/v1/calls/{a['id']}/cancel").status_code == 200


def test_scheduled_for_inside_a_closed_window_waits(system):
    p = windows_project(system, DAILY_9_21)
    set_clock(system, "2026-03-04T20:59:40-05:00")
    when = datetime.fromtimestamp(time.time() + 25).astimezone().isoformat(timespec="seconds")
    a = post(p, NY, scheduled_for=when)  # accepted while open, due at about 21:00:05
    assert datetime.fromisoformat(a["scheduled_for"].replace("Z", "+00:00")) == datetime.fromisoformat(when)
    time.sleep(20)
    assert p.admin.call(a["id"])["calling_window"] is None, "not looked at before its scheduled_for"
    c = held(system, p, a["id"], timeout=20)
    assert c["calling_window"]["held_until"] == "2026-03-05T14:00:00.000Z", c
    assert c["scheduled_for"] == a["scheduled_for"], "scheduled_for stays as asked"
    assert system.dial_count(a["id"]) == 0
    assert p.api.post(f"/v1/calls/{a['id']}/cancel").status_code == 200


def test_several_zones_area_and_most_restrictive(system):
    """Australia: 02 is Sydney alone; 08 is both Adelaide (+10:30) and Perth (+8):
    the call waits until 09:00 in Perth although it is 11:00 in Adelaide."""
    p = windows_project(system, WEEKDAYS_9_17)
    set_clock(system, "2026-01-14T00:30:00+00:00")  # Wednesday: Sydney 11:30, Adelaide 11:00, Perth 08:30
    syd = post(p, SYDNEY)
    amb = post(p, PERTH_OR_ADELAIDE)
    final = p.wait_final(syd["id"])
    assert final["final_state"] == "completed", final
    assert final["calling_window"]["zones"] == ["Australia/Sydney"]
    c = held(system, p, amb["id"])
    assert c["calling_window"]["zones"] == ["Australia/Adelaide", "Australia/Perth"], c
    assert c["calling_window"]["held_until"] == "2026-01-14T01:00:00.000Z", c
    assert 25 * 60 < due_in_s(system, amb["id"]) <= 30 * 60 + 5
    assert p.api.post(f"/v1/calls/{amb['id']}/cancel").status_code == 200


def test_windows_that_never_open_cancel_the_call(system):
    """A toll-free +1 number has every +1 zone, Guam to Newfoundland: a one-hour
    Monday window never holds in all of them at once."""
    p = windows_project(system, '[{"days":"mon","from":"09:00","to":"10:00"}]')
    a = post(p, "+18005550100")
    final = p.wait_final(a["id"], timeout=20)
    assert final["status"] == "canceled" and final["final_state"] == "canceled", final
    assert any((e["detail"] or "").startswith("no_calling_window") for e in final["events"]), final["events"]
    assert "Pacific/Guam" in final["calling_window"]["zones"]
    assert system.dial_count(a["id"]) == 0


def test_no_windows_no_record(system):
    p = windows_project(system, None)
    a = post(p, NY)
    final = p.wait_final(a["id"])
    assert final["final_state"] == "completed" and final["calling_window"] is None, final
    assert p.admin.get("/v1/project").json()["calling_windows"] is None


def test_batch_windows_override_the_projects(system):
    # the project's window is closed all week but one minute on Sundays; the batch's is always open
    p = windows_project(system, '[{"days":"sun","from":"03:00","to":"03:01"}]')
    assert p.admin.get("/v1/project").json()["calling_windows"] == [
        {"days": ["sun"], "from": "03:00", "to": "03:01"}]
    set_clock(system, "2026-03-04T12:00:00+00:00")
    r = upload(p.api, csv_text([["phone"], [NY], ["+4930123456780"]]), pacing=60,
               calling_windows='[{"days":"mon-sun","from":"00:00","to":"24:00"}]')
    b = assert_created(r)
    assert b["calling_windows"] == [{"days": ALL_DAYS, "from": "00:00", "to": "24:00"}], b
    ids = [row[0] for row in system.rows(f"select id from calls where batch_id = '{b['id']}' order by id")]
    for cid in ids:
        final = p.wait_final(cid, timeout=40)
        assert final["final_state"] == "completed", final
        assert final["calling_window"]["source"] == "batch", final
    zones = sorted(p.admin.call(cid)["calling_window"]["zones"][0] for cid in ids)
    assert zones == ["America/New_York", "Europe/Berlin"]
    # a single call of the same project keeps the project's window: held
    single = post(p, NY)
    c = held(system, p, single["id"])
    assert c["calling_window"]["source"] == "project"
    assert p.api.post(f"/v1/calls/{single['id']}/cancel").status_code == 200


@pytest.mark.parametrize("windows, field", [
    ("not json", "calling_windows"),
    ("[]", "calling_windows"),
    ('{"days":"mon","from":"09:00","to":"10:00"}', "calling_windows"),
    ('[{"days":"mon-fry","from":"09:00","to":"10:00"}]', "calling_windows[0].days"),
    ('[{"days":"mon","from":"9:00","to":"10:00"}]', "calling_windows[0].from"),
    ('[{"days":"mon","from":"09:00","to":"25:00"}]', "calling_windows[0].to"),
    ('[{"days":"mon","from":"22:00","to":"02:00"}]', "calling_windows[0].to"),
    ('[{"days":"mon","from":"09:00","to":"10:00","zone":"UTC"}]', "calling_windows[0]"),
])
@pytest.mark.parametrize("multipart", [False, True])
def test_bad_windows_are_refused(system, windows, field, multipart):
    p = system.projects[0] if system.projects else system.new_project()
    r = upload(p.api, csv_text([["phone"], [NY]]), multipart=multipart, calling_windows=windows)
    assert r.status_code == 422, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    body = r.json()
    assert body["code"] == "invalid_calling_windows", body
    assert body["errors"][0]["field"] == field, body
    assert body["errors"][0]["code"] == "invalid_calling_windows"


def test_outdialctl_refuses_bad_windows_and_clears(system):
    p = windows_project(system, DAILY_9_20)
    cp = system.ctl("project", "set", p.id, "--calling-windows", '[{"days":"mon","from":"10:00","to":"09:00"}]',
                    json_out=False, check=False)
    assert cp.returncode == 2 and "calling-windows[0].to" in cp.stderr, cp.stderr
    assert p.admin.get("/v1/project").json()["calling_windows"] == [
        {"days": ALL_DAYS, "from": "09:00", "to": "20:00"}]
    system.ctl("project", "set", p.id, "--calling-windows", "none", json_out=False)
    assert p.admin.get("/v1/project").json()["calling_windows"] is None
