"""Scenarios (docs/control.md "Scenarios"): the AI disclosure and the
opt-out script of each scenario, edited through GET/POST/PATCH
/v1/scenarios, audited, and recorded on each call when it is claimed.

Black box: the HTTP API and psql on the module's database, the sim dialer.
"""

from __future__ import annotations

from helpers_pipeline import NO_LIMITS, SCENARIO, assert_accepted, assert_problem, in_seconds, phone

DEFAULT_OPT_OUT = "If you would rather not get these calls, say so and we will not call this number again."


def _project(system):
    return system.new_project(pacing=600, **NO_LIMITS)


def _ok(r, status=200) -> dict:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:600]}"
    return r.json()


def _audit(p, action):
    """The audit entries of this action made through the API (outdialctl made the first scenario)."""
    return [a for a in _ok(p.admin.get("/v1/audit-log", params={"action": action}))["data"]
            if a["actor"]["type"] == "api_key"]


def test_list_get_and_create(system):
    p = _project(system)
    listed = _ok(p.api.get("/v1/scenarios"))["data"]
    assert [s["idn"] for s in listed] == [SCENARIO]
    one = _ok(p.api.get(f"/v1/scenarios/{SCENARIO}"))
    assert one == listed[0]
    # the harness's scenario (outdialctl scenario add) has the defaults but its own disclosure
    assert one["disclosure"] == "This is an automated call from an AI assistant."
    assert one["disclosure_enabled"] is True and one["disclosure_off_reason"] is None
    assert one["opt_out_script"] == DEFAULT_OPT_OUT

    made = _ok(p.admin.post("/v1/scenarios", json={"idn": "follow_up.v2", "opt_out_script": "Say stop."}), 201)
    assert made["idn"] == "follow_up.v2" and made["disclosure"] == "This call is from an AI receptionist."
    assert made["disclosure_enabled"] is True and made["opt_out_script"] == "Say stop."
    assert [s["idn"] for s in _ok(p.api.get("/v1/scenarios"))["data"]] == [SCENARIO, "follow_up.v2"]
    # a new scenario is usable at once, and belongs to its project only
    assert_accepted(p.api.create_call(phone(0), scenario="follow_up.v2"))
    other = _project(system)
    assert_problem(other.api.get("/v1/scenarios/follow_up.v2"), 404, "not_found")
    assert_problem(other.api.create_call(phone(0), scenario="follow_up.v2"), 422, "unknown_scenario")
    created = _audit(p, "scenario.created")
    assert created[0]["object_id"] == "follow_up.v2", created
    assert created[0]["actor"]["type"] == "api_key"


def test_bad_input_is_refused_by_field(system):
    p = _project(system)
    cases = [
        ({"idn": "Bad Name"}, 422, "invalid_scenario_idn", "idn"),
        ({}, 422, "invalid_scenario_idn", "idn"),
        ({"idn": "x" * 65}, 422, "invalid_scenario_idn", "idn"),
        ({"idn": "_lead"}, 422, "invalid_scenario_idn", "idn"),
        ({"idn": "ok", "disclosure": ""}, 422, "invalid_disclosure", "disclosure"),
        ({"idn": "ok", "disclosure": "é" * 501}, 422, "invalid_disclosure", "disclosure"),
        ({"idn": "ok", "disclosure": 5}, 422, "invalid_disclosure", "disclosure"),
        ({"idn": "ok", "opt_out_script": "x" * 1001}, 422, "invalid_opt_out_script", "opt_out_script"),
        ({"idn": "ok", "disclosure_enabled": "no"}, 422, "invalid_type", "disclosure_enabled"),
        ({"idn": "ok", "colour": "red"}, 422, "unknown_field", "colour"),
        ({"idn": "ok", "disclosure_enabled": True, "disclosure_off_reason": "x"}, 422,
         "invalid_disclosure_off_reason", "disclosure_off_reason"),
        ({"idn": "ok", "disclosure_enabled": False}, 422, "disclosure_off_reason_required", "disclosure_off_reason"),
    ]
    for body, status, code, field in cases:
        r = p.admin.post("/v1/scenarios", json=body)
        problem = assert_problem(r, status, code)
        assert problem["errors"][0]["field"] == field, (body, problem)
    assert_problem(p.admin.post("/v1/scenarios", data=b"{not json", headers={"Content-Type": "application/json"}),
                   400, "invalid_json")
    assert_problem(p.admin.post("/v1/scenarios", json=[1]), 400, "invalid_json")
    assert_problem(p.admin.post("/v1/scenarios", json={"idn": SCENARIO}), 409, "scenario_exists")
    assert_problem(p.admin.patch(f"/v1/scenarios/{SCENARIO}", json={}), 400, "invalid_json")
    assert_problem(p.admin.patch(f"/v1/scenarios/{SCENARIO}", json={"idn": "renamed"}), 422, "unknown_field")
    assert_problem(p.admin.patch("/v1/scenarios/nope", json={"disclosure": "x"}), 404, "not_found")
    assert_problem(p.admin.patch("/v1/scenarios/NOT%20AN%20IDN", json={"disclosure": "x"}), 404, "not_found")
    assert_problem(p.api.get("/v1/scenarios/" + "a" * 300), 404, "not_found")
    # nothing was created or changed by any of it
    assert [s["idn"] for s in _ok(p.api.get("/v1/scenarios"))["data"]] == [SCENARIO]
    assert _audit(p, "scenario.created") == [] and _audit(p, "scenario.updated") == []


def test_turning_the_disclosure_off_needs_a_reason_and_is_audited(system):
    p = _project(system)
    url = f"/v1/scenarios/{SCENARIO}"
    assert_problem(p.admin.patch(url, json={"disclosure_enabled": False}), 422, "disclosure_off_reason_required")
    assert _ok(p.api.get(url))["disclosure_enabled"] is True
    off = _ok(p.admin.patch(url, json={"disclosure_enabled": False,
                                       "disclosure_off_reason": "the callee is our own staff"}))
    assert off["disclosure_enabled"] is False and off["disclosure_off_reason"] == "the callee is our own staff"
    assert off["disclosure"] == "This is an automated call from an AI assistant."  # kept for turning it on again
    entries = _audit(p, "scenario.disclosure_disabled")
    assert len(entries) == 1, entries
    assert entries[0]["object_id"] == SCENARIO and entries[0]["object_type"] == "scenario"
    assert entries[0]["changes"]["disclosure_enabled"] == {"from": True, "to": False}
    assert entries[0]["changes"]["disclosure_off_reason"]["to"] == "the callee is our own staff"
    # other edits while off keep it off (the reason stays)
    still = _ok(p.admin.patch(url, json={"opt_out_script": "Say stop and we stop."}))
    assert still["disclosure_enabled"] is False and still["disclosure_off_reason"] == "the callee is our own staff"
    updated = _audit(p, "scenario.updated")
    assert updated and updated[0]["changes"] == {"opt_out_script": {"from": DEFAULT_OPT_OUT,
                                                                    "to": "Say stop and we stop."}}
    on = _ok(p.admin.patch(url, json={"disclosure_enabled": True, "disclosure": "Hi, I am an AI agent."}))
    assert on["disclosure_enabled"] is True and on["disclosure_off_reason"] is None
    assert on["disclosure"] == "Hi, I am an AI agent."
    assert len(_audit(p, "scenario.disclosure_enabled")) == 1
    # a key without admin may read, not write
    assert_problem(p.api.patch(url, json={"disclosure_enabled": True}), 403, "insufficient_scope")


def test_each_call_records_what_its_callee_was_told(system):
    p = _project(system)
    url = f"/v1/scenarios/{SCENARIO}"
    told = assert_accepted(p.api.create_call(phone(0)))["id"]
    system.wait_final(told, timeout=30)
    call = _ok(p.api.get(f"/v1/calls/{told}"))
    assert call["compliance"] == {"disclosure_enabled": True,
                                  "disclosure": "This is an automated call from an AI assistant.",
                                  "opt_out_script": DEFAULT_OPT_OUT}, call
    _ok(p.admin.patch(url, json={"disclosure_enabled": False, "disclosure_off_reason": "internal test line",
                                 "opt_out_script": "Press 9."}))
    untold = assert_accepted(p.api.create_call(phone(0)))["id"]
    system.wait_final(untold, timeout=30)
    assert _ok(p.api.get(f"/v1/calls/{untold}"))["compliance"] == {
        "disclosure_enabled": False, "disclosure": None, "opt_out_script": "Press 9."}
    # the first call keeps what was said then
    assert _ok(p.api.get(f"/v1/calls/{told}"))["compliance"]["disclosure_enabled"] is True
    # a call not yet claimed has nothing recorded
    later = assert_accepted(p.api.create_call(phone(0), scheduled_for=in_seconds(3600)))["id"]
    assert _ok(p.api.get(f"/v1/calls/{later}"))["compliance"] is None
