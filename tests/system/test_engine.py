"""The conversation engine interface (proto/engine.md) end to end: a dialer
with the `sip` provider dials through sipp (the carrier); this module's HTTP
server plays the engine. What the engine does for a call is chosen by the
call's metadata `engine_plan`, which the engine reads from the session.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import jsonschema
import pytest
import requests

import test_sip as sip
from harness import free_port, wait_until
from helpers_engine import EngineServer
from helpers_pipeline import NO_LIMITS, assert_accepted, phone, wait_all_final

ENGINE_PORT = free_port()
ENGINE_TOKEN = "engine-shared-token"

SYSTEM_ENV = {
    **sip.SYSTEM_ENV,
    "OUTDIAL_SIP_MAX_TALK_S": "20",       # the engine ends calls, not the talk limit
    "OUTDIAL_SIP_MEDIA": "127.0.0.1:41234",
    "OUTDIAL_ENGINE_URL": f"http://127.0.0.1:{ENGINE_PORT}/",
    "OUTDIAL_ENGINE_TOKEN": ENGINE_TOKEN,
    "OUTDIAL_ENGINE_TIMEOUT_MS": "1000",
}

SCHEMAS = Path(__file__).resolve().parents[2] / "proto" / "messages"


class Engine:
    """The conversation engine: records what it gets, acts per engine_plan."""

    def __init__(self):
        self.sessions: dict[str, dict] = {}
        self.ends: dict[str, dict] = {}
        self.auth: list[str] = []
        self.report_answers: dict[str, list[tuple[int, dict]]] = {}
        self.lock = threading.Lock()
        self.server = EngineServer(ENGINE_PORT, self.on_session, self.on_end, self.on_request)

    def on_request(self, headers):
        with self.lock:
            self.auth.append(headers.get("Authorization", ""))

    def plan(self, session: dict) -> str:
        return (session.get("metadata") or {}).get("engine_plan", "report_success")

    def on_session(self, h, s: dict):
        with self.lock:
            self.sessions[s["call_id"]] = s
        plan = self.plan(s)
        if plan == "refuse":
            return h.answer(503, {"error": "no agent free"})
        if plan == "silent":
            time.sleep(2.5)  # beyond OUTDIAL_ENGINE_TIMEOUT_MS
            return h.answer(200, {})
        h.answer(200, {})
        if plan in ("report_success", "report_voicemail", "report_bad_first", "report_opt_out"):
            threading.Thread(target=self.report, args=(s, plan), daemon=True).start()

    def report(self, s: dict, plan: str):
        time.sleep(0.4)  # talk a little
        url, answers = s["report_url"], []
        good = {"Authorization": f"Bearer {s['report_token']}"}
        body = ({"result": "voicemail"} if plan == "report_voicemail"
                else {"result": "completed", "outcome": "success", "goal_completed": True, "later": "ignored"})
        if plan == "report_bad_first":
            tries = [({"Authorization": "Bearer " + "0" * 64}, body),   # wrong token
                     ({}, body),                                         # no token
                     (good, {"result": "completed", "outcome": "great"}),
                     (good, {"result": "hung_up"}),
                     (good, {"result": "completed", "outcome": "middle", "goal_completed": "yes"}),
                     (good, None),                                       # not JSON
                     (good, {"result": "completed", "outcome": "middle", "goal_completed": False}),
                     (good, body)]                                       # a second report
        elif plan == "report_opt_out":
            tries = [(good, {"result": "completed", "outcome": "middle", "opted_out": "yes"}),
                     (good, {"result": "completed", "outcome": "middle", "opted_out": True})]
        else:
            tries = [(good, body)]
        for headers, b in tries:
            data = b"{not json" if b is None else json.dumps(b).encode()
            r = requests.post(url, data=data, headers={**headers, "Content-Type": "application/json"}, timeout=5)
            answers.append((r.status_code, r.json() if r.content else {}))
        with self.lock:
            self.report_answers[s["call_id"]] = answers

    def on_end(self, h, body: dict):
        with self.lock:
            self.ends[body["call_id"]] = body
        plan = self.plan(self.sessions.get(body["call_id"], {}))
        if plan == "last_word_middle":
            return h.answer(200, {"result": "completed", "outcome": "middle", "goal_completed": False})
        if plan == "last_word_voicemail":
            return h.answer(200, {"result": "voicemail"})
        h.answer(204, None)

    def stop(self):
        self.server.stop()


@pytest.fixture(scope="module")
def engine():
    e = Engine()
    yield e
    e.stop()


def call_with(system, tmp_path, engine, scenario, plan, digit=0, before=None):
    carrier = sip.Carrier(tmp_path, scenario)
    p = system.new_project(pacing=600, **NO_LIMITS)
    if before is not None:
        before(p)
    c = assert_accepted(p.api.create_call(phone(digit), metadata={"engine_plan": plan, "customer": "Ada"}))
    final = wait_all_final(system, [c["id"]], timeout=40)[c["id"]]
    call = p.api.get(f"/v1/calls/{c['id']}").json()
    rc = carrier.wait()
    return p, c["id"], call, final, rc, carrier


def check_schema(name: str, doc: dict):
    jsonschema.validate(doc, json.loads((SCHEMAS / f"engine_{name}.schema.json").read_text()))


def test_report_success_hangs_up_with_the_outcome(system, tmp_path, engine):
    p, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_we_bye", "report_success")
    assert rc == 0, carrier.errors()  # sipp got our BYE
    assert final["final_state"] == "completed", sip.details(call)
    assert call["outcome"] == "success" and call["goal_completed"] is True, call
    s = engine.sessions[cid]
    check_schema("session", s)
    assert s["project_id"] == p.id and s["scenario"] == "appointment_reminder"
    assert s["metadata"] == {"engine_plan": "report_success", "customer": "Ada"}
    assert s["phone"] == call["phone"]
    # the media endpoints: ours as offered (OUTDIAL_SIP_MEDIA), the callee's from sipp's SDP answer
    assert s["media"] == {"local": {"host": "127.0.0.1", "port": 41234},
                          "remote": {"host": "127.0.0.1", "port": 6000, "codec": "PCMU"}}
    assert s["report_url"].endswith(f"/engine/v1/sessions/{cid}/report")
    # the scenario's compliance texts, as recorded on the call
    assert s["disclosure_enabled"] is True and s["disclosure"] == call["compliance"]["disclosure"]
    assert s["opt_out_script"] == call["compliance"]["opt_out_script"] and s["opt_out_script"]
    assert engine.report_answers[cid] == [(202, {"call_id": cid, "status": "accepted"})]
    assert cid not in engine.ends  # the report ended it: no end notice
    assert f"Bearer {ENGINE_TOKEN}" in engine.auth
    assert call["duration_s"] is not None and call["duration_s"] >= 0.3


def test_report_voicemail(system, tmp_path, engine):
    _, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_we_bye", "report_voicemail")
    assert rc == 0, carrier.errors()
    assert final["final_state"] == "voicemail_detected", sip.details(call)
    assert call.get("outcome") is None
    assert "voicemail detected by the conversation engine" in sip.details(call)


def test_bad_reports_are_refused_then_one_is_taken(system, tmp_path, engine):
    _, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_we_bye", "report_bad_first")
    assert rc == 0, carrier.errors()
    answers = engine.report_answers[cid]
    codes = [a[0] for a in answers]
    # the second report: 409 while the call is known, 404 once its slot is freed
    assert codes[:7] == [401, 401, 400, 400, 400, 400, 202] and codes[7] in (409, 404), answers
    assert answers[0][1]["code"] == "unauthorized"
    assert [a[1]["code"] for a in answers[2:6]] == ["invalid_report"] * 4
    assert [a[1]["errors"][0]["field"] for a in answers[2:5]] == ["outcome", "result", "goal_completed"]
    assert answers[7][1]["code"] == {409: "already_reported", 404: "session_not_found"}[codes[7]]
    assert final["final_state"] == "completed" and call["outcome"] == "middle" and call["goal_completed"] is False


def test_callee_hangs_up_first_engine_gives_its_last_word(system, tmp_path, engine):
    _, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_callee_bye", "last_word_middle")
    assert rc == 0, carrier.errors()
    assert final["final_state"] == "completed" and call["outcome"] == "middle", sip.details(call)
    end = engine.ends[cid]
    check_schema("end", end)
    assert end["final_state"] == "completed" and "callee" in end["detail"] and end["talk_ms"] >= 0


def test_callee_hangs_up_first_voicemail_last_word(system, tmp_path, engine):
    _, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_callee_bye", "last_word_voicemail")
    assert rc == 0, carrier.errors()
    assert final["final_state"] == "voicemail_detected", sip.details(call)


def test_callee_hangs_up_first_no_word_means_no_outcome(system, tmp_path, engine):
    _, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_callee_bye", "say_nothing")
    assert rc == 0, carrier.errors()
    assert final["final_state"] == "completed" and call.get("outcome") is None, sip.details(call)
    assert cid in engine.ends
    # the session is over: a late report gets 404
    s = engine.sessions[cid]
    r = requests.post(s["report_url"], json={"result": "voicemail"},
                      headers={"Authorization": f"Bearer {s['report_token']}"}, timeout=5)
    assert r.status_code == 404 and r.json()["code"] == "session_not_found"


@pytest.mark.parametrize("plan,why", [("refuse", "refused the session: HTTP 503"),
                                      ("silent", "conversation engine unreachable")])
def test_engine_that_will_not_take_the_call_hangs_up_as_internal_error(system, tmp_path, engine, plan, why):
    _, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_we_bye", plan)
    assert rc == 0, carrier.errors()  # BYE sent at once, not at the talk limit
    assert final["final_state"] == "internal_error", sip.details(call)
    assert why in sip.details(call)
    assert call["duration_s"] in (0, None)
    assert system.dialer.metrics()['outdial_engine_sessions_total{result="failed"}'] >= 1
    # recorded as the engine's failure, with the reason, and alerted by the outcome service
    err = json.loads(system.scalar(f"SELECT internal_error FROM calls WHERE id = '{cid}'"))
    assert err["component"] == "engine" and why in err["reason"] and err["detected_by"] == "dialer", err
    assert err["dialer_id"], err
    wait_until(lambda: any(l.get("alert") == "internal_error" and l.get("call_id") == cid
                           for l in system.outcome.log_lines()), timeout=10, what="the alert line")
    assert system.outcome.metrics()['outdial_internal_errors_total{component="engine"}'] >= 1


def test_an_opt_out_puts_the_number_on_the_dnc_list(system, tmp_path, engine):
    """The engine reports that the callee opted out: the call ends completed,
    its last event says so, the number is on the project's DNC list (source
    opt_out), and the next call to it is refused."""
    p, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_we_bye", "report_opt_out")
    assert rc == 0, carrier.errors()
    answers = engine.report_answers[cid]
    assert [a[0] for a in answers] == [400, 202], answers
    assert answers[0][1]["errors"][0]["field"] == "opted_out"
    assert final["final_state"] == "completed" and call["outcome"] == "middle", sip.details(call)
    assert "the callee opted out" in call["events"][-1]["detail"], sip.details(call)
    listed = p.admin.get("/v1/dnc", params={"phone": call["phone"]}).json()["data"]
    assert [(e["phone"], e["source"]) for e in listed] == [(call["phone"], "opt_out")], listed
    r = p.api.create_call(call["phone"])
    assert r.status_code == 422 and r.json()["code"] == "phone_on_dnc_list", r.text
    # the proof: the DNC row names the call; the audit log names the outcome service
    proof = system.scalar(f"SELECT call_id FROM dnc WHERE project_id = '{p.id}' AND phone = '{call['phone']}'")
    assert proof == cid, proof
    audit = p.admin.get("/v1/audit-log").json()["data"]
    added = [a for a in audit if a["action"] == "dnc.added"]
    assert added and added[0]["changes"]["source"] == "opt_out", audit



def test_the_session_carries_the_scenario_as_edited(system, tmp_path, engine):
    """The scenario's disclosure turned off (with its reason) and its own
    opt-out script: the engine's session says so, and so does the call."""
    def edit(p):
        r = p.admin.patch("/v1/scenarios/appointment_reminder",
                          json={"disclosure_enabled": False, "disclosure_off_reason": "calls to our own staff",
                                "opt_out_script": "Say 'stop calling' and we will."})
        assert r.status_code == 200, r.text
    p, cid, call, final, rc, carrier = call_with(system, tmp_path, engine, "answer_we_bye", "report_success",
                                                 before=edit)
    assert rc == 0, carrier.errors()
    s = engine.sessions[cid]
    check_schema("session", s)
    assert s["disclosure_enabled"] is False and "disclosure" not in s, s
    assert s["opt_out_script"] == "Say 'stop calling' and we will."
    assert call["compliance"] == {"disclosure_enabled": False, "disclosure": None,
                                  "opt_out_script": "Say 'stop calling' and we will."}, call
