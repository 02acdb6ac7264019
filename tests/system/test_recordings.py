"""Call recordings (docs/recordings.md) end to end: the conversation engine
(this module's HTTP server, proto/engine.md) or the sim provider
(metadata `sim_recording`) reports a recording; it is stored with the final
state, shown as metadata (never its URL) in the call object, lists, webhooks
and results.csv, handed out at GET /v1/calls/{id}/recording with an audit
entry, and deleted by the outcome service after the project's retention.

The dialer runs the `sim` provider as the carrier (no sipp needed) with
OUTDIAL_ENGINE_URL set, so every answered call opens a session here; the
call's metadata `engine_plan` says what the engine does.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from pathlib import Path

import jsonschema
import pytest
import requests

from harness import free_port, wait_until
from helpers_batches import assert_created, neutralised, results_csv, upload, wait_batch
from helpers_engine import EngineServer
from helpers_pipeline import NO_LIMITS, assert_accepted, assert_problem, in_seconds, phone, wait_all_final
from helpers_webhooks import Receiver

ENGINE_PORT = free_port()
SYSTEM_ENV = {
    "OUTDIAL_ENGINE_URL": f"http://127.0.0.1:{ENGINE_PORT}",
    "OUTDIAL_ENGINE_TIMEOUT_MS": "2000",
    "OUTDIAL_WEBHOOK_ALLOW_PRIVATE": "1",     # the receiver lives on 127.0.0.1
    "OUTDIAL_WEBHOOK_POLL_MS": "100",
    "OUTDIAL_REAPER_INTERVAL_MS": "200",      # the expiry chore runs with the reaper
}
SCHEMAS = Path(__file__).resolve().parents[2] / "proto" / "messages"
SHA = hashlib.sha256(b"a recording").hexdigest()
URL = "https://recordings.example.com/calls/{cid}.wav?X-Amz-Signature=c0ffee"
KEY = "bucket-7/2026/{cid}.wav"
TALK = {"sim_talk_ms": 5000}                  # the sim keeps the call up until the engine reports
RECORDING_KEYS = ["kind", "duration_s", "sha256", "created_at", "deleted_at"]


class Engine:
    """The conversation engine: answers sessions and reports per engine_plan."""

    def __init__(self):
        self.sessions: dict[str, dict] = {}
        self.ends: dict[str, dict] = {}
        self.answers: dict[str, list[tuple[int, dict]]] = {}
        self.lock = threading.Lock()
        self.server = EngineServer(ENGINE_PORT, self.on_session, self.on_end)

    def on_session(self, h, s: dict):
        with self.lock:
            self.sessions[s["call_id"]] = s
        h.answer(200, {})
        threading.Thread(target=self.report, args=(s,), daemon=True).start()

    def on_end(self, h, body: dict):
        with self.lock:
            self.ends[body["call_id"]] = body
            s = self.sessions.get(body["call_id"], {})
        if (s.get("metadata") or {}).get("engine_plan") == "last_word_voicemail_key":
            h.answer(200, {"result": "voicemail", "recording": {
                "object_key": KEY.format(cid=body["call_id"]), "duration_ms": 2500, "sha256": SHA}})
        else:
            h.answer(204, None)

    def report(self, s: dict):
        plan = (s.get("metadata") or {}).get("engine_plan", "")
        cid = s["call_id"]
        good = {"result": "completed", "outcome": "success", "goal_completed": True}
        rec = {"url": URL.format(cid=cid), "duration_ms": 48210, "sha256": SHA}
        if plan == "record_url":
            tries = [{**good, "recording": rec}]
        elif plan == "bad_recordings_first":
            tries = [{**good, "recording": b} for b in bad_recordings(rec)] + [good]
        else:
            return  # the call ends by itself: the end notice follows
        time.sleep(0.2)
        answers = []
        for body in tries:
            r = requests.post(s["report_url"], json=body, timeout=5,
                              headers={"Authorization": f"Bearer {s['report_token']}"})
            answers.append((r.status_code, r.json() if r.content else {}))
        with self.lock:
            self.answers[cid] = answers

    def stop(self):
        self.server.stop()


def bad_recordings(rec: dict) -> list[dict]:
    """Recordings a report must not carry, in the order of BAD_FIELDS."""
    return [
        "https://x/y.wav",                                               # not an object
        {"duration_ms": 1, "sha256": SHA},                                # neither url nor object_key
        {**rec, "object_key": "k"},                                       # both
        {**rec, "url": "ftp://recordings.example.com/a.wav"},
        {**rec, "url": "https://r.example.com/" + "a" * 2030},           # 2051 bytes: over 2048
        {**rec, "duration_ms": -1},
        {**rec, "duration_ms": "48210"},
        {**rec, "sha256": SHA[:-1]},
        {**rec, "sha256": "z" * 64},
    ]


BAD_FIELDS = ["recording", "recording", "recording", "recording.url", "recording.url", "recording.duration_ms",
              "recording.duration_ms", "recording.sha256", "recording.sha256"]


@pytest.fixture(scope="module")
def engine():
    e = Engine()
    yield e
    e.stop()


def project(system, **kw):
    return system.new_project(pacing=6000, scopes=("outbound:trigger", "sessions:read", "webhooks:manage"),
                              **NO_LIMITS, **kw)


def place(system, p, digit=0, **metadata) -> tuple[str, dict]:
    """A call with this metadata, waited for until final: (id, GET /v1/calls/{id})."""
    c = assert_accepted(p.api.create_call(phone(digit), metadata=metadata))
    wait_all_final(system, [c["id"]], timeout=40)
    return c["id"], p.api.get(f"/v1/calls/{c['id']}").json()


def stored(system, cid: str) -> dict | None:
    rows = system.rows(f"SELECT kind, coalesce(url, ''), coalesce(object_key, ''), duration_ms, sha256, "
                       f"deleted_at IS NOT NULL FROM recordings WHERE call_id = '{cid}'")
    if not rows:
        return None
    k, url, key, ms, sha, deleted = rows[0]
    return {"kind": k, "url": url or None, "object_key": key or None, "duration_ms": int(ms), "sha256": sha,
            "deleted": deleted == "t"}


def audit(p, action: str) -> list[dict]:
    return [a for a in p.admin.get("/v1/audit-log", params={"action": action}).json()["data"]]


# ---------------------------------------------------------------- reported and shown


def test_an_engine_recording_is_stored_and_shown_as_metadata_only(system, engine):
    p = project(system)
    with Receiver() as rx:
        r = p.api.post("/v1/webhooks", json={"url": rx.url("/hook"), "event_types": ["call.completed"]})
        assert r.status_code == 201, r.text
        cid, call = place(system, p, engine_plan="record_url", **TALK)
        assert engine.answers[cid] == [(202, {"call_id": cid, "status": "accepted"})], engine.answers[cid]
        assert call["final_state"] == "completed" and call["outcome"] == "success", call
        # stored with the call, as reported
        assert stored(system, cid) == {"kind": "url", "url": URL.format(cid=cid), "object_key": None,
                                       "duration_ms": 48210, "sha256": SHA, "deleted": False}
        # the call object: metadata, never the URL
        rec = call["recording"]
        assert list(rec) == RECORDING_KEYS, rec
        assert rec["kind"] == "url" and rec["duration_s"] == 48.21 and rec["sha256"] == SHA, rec
        assert rec["created_at"] and rec["deleted_at"] is None, rec
        assert "recordings.example.com" not in json.dumps(call)
        # the same in the list
        listed = [c for c in p.api.get("/v1/calls", params={"limit": 200}).json()["data"] if c["id"] == cid]
        assert listed and listed[0]["recording"] == rec, listed
        # and in the final webhook, written in the transaction of the final state
        hits = rx.wait_hits(1, path="/hook", timeout=20)
        body = json.loads(hits[0].body)
        assert body["type"] == "call.completed" and body["data"]["id"] == cid, body
        assert body["data"]["recording"] == rec, body
        assert b"recordings.example.com" not in hits[0].body

    # access: the URL, once asked for, and the audit log names the key that asked
    r = p.api.get(f"/v1/calls/{cid}/recording")
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["call_id"] == cid and got["kind"] == "url" and got["url"] == URL.format(cid=cid), got
    assert got["object_key"] is None and got["duration_s"] == 48.21 and got["sha256"] == SHA, got
    assert got["created_at"] == rec["created_at"] and got["expires_at"] > got["created_at"], got
    entries = audit(p, "recording.accessed")
    assert len(entries) == 1, entries
    a = entries[0]
    assert a["object_type"] == "recording" and a["object_id"] == cid, a
    assert a["actor"]["type"] == "api_key" and a["actor"]["key_id"] == p.key_id, a
    assert "recordings.example.com" not in json.dumps(a)   # a signed URL is a credential: never logged
    # each access is logged
    assert p.api.get(f"/v1/calls/{cid}/recording").status_code == 200
    assert len(audit(p, "recording.accessed")) == 2
    # another project's key: not found, and nothing logged for it
    other = project(system)
    assert_problem(other.api.get(f"/v1/calls/{cid}/recording"), 404, "not_found")
    assert audit(other, "recording.accessed") == []


def test_an_engine_recording_in_the_answer_to_the_end_notice(system, engine):
    """The sim ends the call first; the engine's answer to the end notice is a
    voicemail report with an object key."""
    p = project(system)
    cid, call = place(system, p, engine_plan="last_word_voicemail_key", sim_talk_ms=300)
    assert cid in engine.ends
    assert call["final_state"] == "voicemail_detected", call
    assert call["recording"]["kind"] == "object_key" and call["recording"]["duration_s"] == 2.5, call
    got = p.api.get(f"/v1/calls/{cid}/recording").json()
    assert got["kind"] == "object_key" and got["object_key"] == KEY.format(cid=cid) and got["url"] is None, got


def test_bad_recordings_are_refused_naming_the_field_and_the_call_still_ends(system, engine):
    p = project(system)
    cid, call = place(system, p, engine_plan="bad_recordings_first", **TALK)
    answers = engine.answers[cid]
    assert [a[0] for a in answers] == [400] * len(BAD_FIELDS) + [202], answers
    assert all(a[1]["code"] == "invalid_report" for a in answers[:-1]), answers
    assert [a[1]["errors"][0]["field"] for a in answers[:-1]] == BAD_FIELDS, answers
    # the report's JSON Schema refuses the same recordings
    schema = json.loads((SCHEMAS / "engine_report.schema.json").read_text())
    good = {"result": "completed", "outcome": "success", "recording": {"url": "https://a/b", "duration_ms": 1,
                                                                      "sha256": SHA}}
    jsonschema.validate(good, schema)
    for bad in bad_recordings(good["recording"]):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, "recording": bad}, schema)
    # the report that was taken ended the call, with no recording
    assert call["final_state"] == "completed" and call["outcome"] == "success", call
    assert call["recording"] is None and stored(system, cid) is None
    assert_problem(p.api.get(f"/v1/calls/{cid}/recording"), 404, "not_found")


def test_the_sim_reports_a_recording_when_asked(system, engine):
    """metadata sim_recording: the sim's recording when the engine gave none,
    the engine's when it gave one."""
    p = project(system)
    cid, call = place(system, p, engine_plan="say_nothing", sim_recording=True, sim_talk_ms=300)
    assert cid in engine.ends and call["final_state"] == "completed", call
    s = stored(system, cid)
    assert s["kind"] == "url" and s["url"] == f"https://sim.outdial.invalid/recordings/{cid}.wav", s
    assert s["sha256"] == hashlib.sha256(cid.encode()).hexdigest(), s
    assert 250 <= s["duration_ms"] < 5000, s
    assert call["recording"]["kind"] == "url" and call["recording"]["duration_s"] == s["duration_ms"] / 1000
    cid, call = place(system, p, engine_plan="say_nothing", sim_recording="object_key", sim_talk_ms=300)
    assert stored(system, cid)["object_key"] == f"sim/recordings/{cid}.wav"
    # the engine's recording wins over the sim's
    cid, call = place(system, p, engine_plan="record_url", sim_recording=True, **TALK)
    assert stored(system, cid)["url"] == URL.format(cid=cid)


def test_a_call_without_a_recording_shows_null(system, engine):
    p = project(system)
    r = p.api.create_call(phone(5), scheduled_for=in_seconds(1))   # busy: never answered
    accepted = assert_accepted(r)
    assert accepted["recording"] is None
    wait_all_final(system, [accepted["id"]], timeout=40)
    call = p.api.get(f"/v1/calls/{accepted['id']}").json()
    # the 202's call object has the members of GET's, in the same order
    assert list(accepted) == [k for k in call if k != "events"], (list(accepted), list(call))
    assert call["final_state"] == "busy" and call["recording"] is None, call
    assert_problem(p.api.get(f"/v1/calls/{accepted['id']}/recording"), 404, "not_found")
    # answered, talked, nothing recorded
    cid, call = place(system, p, engine_plan="say_nothing", sim_talk_ms=200)
    assert call["final_state"] == "completed" and call["recording"] is None, call
    r = assert_problem(p.api.get(f"/v1/calls/{cid}/recording"), 404, "not_found")
    assert "no recording" in r["detail"], r
    assert_problem(p.api.get(f"/v1/calls/{uuid.uuid4()}/recording"), 404, "not_found")
    assert_problem(p.api.get("/v1/calls/not-a-uuid/recording"), 404, "not_found")
    assert audit(p, "recording.accessed") == []


def test_results_csv_has_the_recording_columns(system, engine):
    p = project(system)
    phones = [phone(0), phone(1), phone(5)]
    rows = "phone,sim_recording,engine_plan,sim_talk_ms\r\n" \
           f"{phones[0]},1,say_nothing,300\r\n{phones[1]},,say_nothing,300\r\n{phones[2]},1,,\r\n"
    b = assert_created(upload(p.api, rows, pacing=600))
    wait_batch(p.api, b["id"], lambda x: x["status"] == "completed", timeout=60, what="completed")
    raw, recs = results_csv(p.api, b["id"])
    head = recs[0]
    assert head[-3:] == ["recording_duration_s", "recording_sha256", "recording_deleted_at"], head
    assert head[:4] == ["phone", "sim_recording", "engine_plan", "sim_talk_ms"], head
    col = {name: i for i, name in enumerate(head)}
    by_phone = {r[0]: r for r in recs[1:]}   # the phone cell as uploaded, neutralised ('+34...)
    assert len(by_phone) == 3, recs
    recorded = by_phone[neutralised(phones[0])]
    cid = recorded[col["call_id"]]
    s = stored(system, cid)
    assert recorded[col["recording_duration_s"]] == f"{s['duration_ms'] // 1000}.{s['duration_ms'] % 1000:03d}"
    assert recorded[col["recording_sha256"]] == s["sha256"] == hashlib.sha256(cid.encode()).hexdigest()
    assert recorded[col["recording_deleted_at"]] == ""
    for ph in phones[1:]:   # not asked for; asked for but never answered
        assert by_phone[neutralised(ph)][-3:] == ["", "", ""], by_phone[ph]
    assert "sim.outdial.invalid" not in raw and all(len(r) == len(head) for r in recs), raw


# ---------------------------------------------------------------- retention


def test_retention_deletes_expired_recordings(system, engine):
    p, keep = project(system), project(system)
    # the operator's setting, shown in GET /v1/project (default 90 days)
    assert p.admin.get("/v1/project").json()["recording_retention_days"] == 90
    system.ctl("project", "set", p.id, "--recording-retention-days", "1", json_out=False)
    proj = p.admin.get("/v1/project").json()
    assert proj["recording_retention_days"] == 1 and proj["id"] == p.id, proj
    changed = [a for a in audit(p, "project.updated") if "recording_retention_days" in a["changes"]]
    assert changed and changed[0]["changes"]["recording_retention_days"] == {"from": 90, "to": 1}, changed
    for bad in ("-1", "36501", "x"):
        cp = system.ctl("project", "set", p.id, "--recording-retention-days", bad, json_out=False, check=False)
        assert cp.returncode == 2, (bad, cp.stdout, cp.stderr)

    old, young = (place(system, p, engine_plan="record_url", **TALK)[0] for _ in range(2))
    kept, _ = place(system, keep, engine_plan="record_url", **TALK)
    # two days old: past p's retention of 1 day, not past keep's 90
    system.psql(f"UPDATE recordings SET created_at = now() - interval '2 days' WHERE call_id IN ('{old}', '{kept}')")
    wait_until(lambda: stored(system, old)["deleted"], timeout=20, what="the expired recording deleted")
    s = stored(system, old)
    assert s["url"] is None and s["object_key"] is None and s["sha256"] == SHA, s
    assert not stored(system, young)["deleted"] and not stored(system, kept)["deleted"]
    call = p.api.get(f"/v1/calls/{old}").json()
    assert call["recording"]["deleted_at"] is not None and call["recording"]["kind"] == "url", call
    gone = assert_problem(p.api.get(f"/v1/calls/{old}/recording"), 410, "recording_deleted")
    assert gone["title"] == "Gone" and "retention" in gone["detail"], gone
    assert p.api.get(f"/v1/calls/{young}/recording").status_code == 200
    deleted = audit(p, "recording.deleted")
    assert [a["object_id"] for a in deleted] == [old], deleted
    assert deleted[0]["actor"] == {"type": "system", "service": "outcome"}, deleted
    assert deleted[0]["changes"]["retention_days"] == 1, deleted
    assert audit(keep, "recording.deleted") == []
    assert system.outcome.metrics().get("outdial_outcome_recordings_deleted_total", 0) >= 1

    # retention 0: a recording is deleted at the next run of the chore, no ageing needed
    system.ctl("project", "set", keep.id, "--recording-retention-days", "0", json_out=False)
    wait_until(lambda: stored(system, kept)["deleted"], timeout=20, what="retention 0 deletes at once")
    assert_problem(keep.api.get(f"/v1/calls/{kept}/recording"), 410, "recording_deleted")
    assert [a["object_id"] for a in audit(keep, "recording.deleted")] == [kept]
