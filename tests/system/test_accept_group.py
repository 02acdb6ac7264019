"""od_accept_calls decides a whole group of POST /v1/calls requests in one
statement (proto/sql/003_accept_set.sql). The ingress rarely forms a group
with a precise shape, so these tests hand the function a group directly, on
the real PostgreSQL of the system, and check each answer against what the
same requests one by one would get."""

from __future__ import annotations

import json
import uuid

from helpers_pipeline import SCENARIO, phone


def _req(p, key_id: str, n: int | str, *, idem: str | None = None, body_hash: str = "h", scenario: str = SCENARIO,
         calls_per_min: int = 5, requests_per_hour: int = 1000, caller_id: str | None = None) -> dict:
    return {"key_id": key_id, "project_id": p.id, "calls_per_min": calls_per_min,
            "requests_per_hour": requests_per_hour, "idem_key": idem, "request_hash": body_hash,
            "call_id": str(uuid.uuid4()), "scenario": scenario, "phone": n if isinstance(n, str) else phone(n), "metadata": {"n": n},
            "scheduled_for": None, "caller_id": caller_id}


def _accept(system, reqs: list[dict]) -> list[dict]:
    lit = json.dumps(reqs).replace("'", "''")
    return json.loads(system.infra.scalar(f"SELECT od_accept_calls('{lit}'::jsonb)::text", db=system.db))


def test_rate_limit_within_one_group(system):
    p = system.new_project()
    res = _accept(system, [_req(p, p.key_id, i) for i in range(8)])
    assert [r["r"] for r in res] == ["accepted"] * 5 + ["rate_limited"] * 3, res
    # RateLimit headers count down as if the requests came one by one
    assert [r["rl"]["remaining"] for r in res[:5]] == [4, 3, 2, 1, 0], res
    assert all(r["rl"]["policy"] == "calls" and r["rl"]["limit"] == 5 for r in res), res
    for r in res[5:]:
        assert r["rl"]["ok"] is False and r["rl"]["remaining"] == 0
        # 5 per minute refills one every 12 s
        assert 11_000 <= r["rl"]["retry_after_ms"] <= 12_000, r
    # the bucket was stored: the next group is refused at once
    assert _accept(system, [_req(p, p.key_id, 9)])[0]["r"] == "rate_limited"
    stored = system.infra.scalar(f"SELECT count(*) FROM calls WHERE project_id = '{p.id}'", db=system.db)
    assert stored == "5"


def test_hourly_budget_refuses_with_its_own_policy(system):
    p = system.new_project()
    res = _accept(system, [_req(p, p.key_id, i, calls_per_min=100, requests_per_hour=3) for i in range(4)])
    assert [r["r"] for r in res] == ["accepted"] * 3 + ["rate_limited"], res
    assert res[0]["rl"]["policy"] == "requests" and res[0]["rl"]["remaining"] == 2, res
    assert res[3]["rl"]["policy"] == "requests" and res[3]["rl"]["window"] == 3600, res


def test_idempotency_within_and_across_groups(system):
    p = system.new_project()
    res = _accept(system, [
        _req(p, p.key_id, 1, idem="a"),
        _req(p, p.key_id, 2, idem="a"),                   # same key, same body, concurrent: 409
        _req(p, p.key_id, 3, idem="a", body_hash="h2"),   # same key, other body: 422
        _req(p, p.key_id, 4, idem="b", scenario="nope"),  # rejected: not remembered
        _req(p, p.key_id, 5),
    ])
    assert [r["r"] for r in res] == ["accepted", "in_use", "reused", "unknown_scenario", "accepted"], res
    # duplicates never take a rate-limit token: two accepted + one rejected took 3 of 5
    assert res[4]["rl"]["remaining"] == 2, res
    assert system.infra.scalar(f"SELECT count(*) FROM idempotency_keys WHERE project_id = '{p.id}'", db=system.db) == "1"
    # the key is remembered, and replays are not rate limited even when the bucket is empty
    _accept(system, [_req(p, p.key_id, 10 + i) for i in range(5)])
    system.infra.psql(f"UPDATE idempotency_keys SET state = 'done', response = '{{\"x\":1}}' "
                      f"WHERE project_id = '{p.id}' AND key = 'a'", db=system.db)
    res = _accept(system, [_req(p, p.key_id, 1, idem="a"), _req(p, p.key_id, 6, idem="b", scenario="nope"),
                           _req(p, p.key_id, 7)])
    assert [r["r"] for r in res] == ["replay", "rate_limited", "rate_limited"], res
    assert res[0]["status"] == 202 and res[0]["body"] == '{"x":1}', res


def test_an_unanswered_record_replays_the_call(system):
    """An ingress that died between storing the call and completing its
    Idempotency-Key record: after 30 s a retry gets the call itself."""
    p = system.new_project()
    r = _req(p, p.key_id, 1, idem="lost")
    assert _accept(system, [r])[0]["r"] == "accepted"
    assert _accept(system, [r])[0]["r"] == "in_use"
    system.infra.psql(f"UPDATE idempotency_keys SET created_at = now() - interval '31 seconds' "
                      f"WHERE project_id = '{p.id}' AND key = 'lost'", db=system.db)
    again = _accept(system, [r])[0]
    assert again["r"] == "replay" and again["status"] == 202, again
    assert json.loads(again["body"])["id"] == r["call_id"]


def test_project_rules_per_request(system):
    p = system.new_project()
    blocked = phone(2)
    system.infra.psql(f"INSERT INTO dnc (project_id, phone) VALUES ('{p.id}', '{blocked}')", db=system.db)
    res = _accept(system, [
        _req(p, p.key_id, 1, caller_id=p.caller_id),
        _req(p, p.key_id, blocked),
        _req(p, p.key_id, 3, caller_id="+14155550000"),
        _req(p, p.key_id, 4),
    ])
    assert [r["r"] for r in res] == ["accepted", "phone_on_dnc_list", "caller_id_not_verified", "accepted"], res
    assert res[0]["caller_id"] == p.caller_id and res[3]["caller_id"] == p.caller_id, res
    assert all(isinstance(r["due_ms"], int) and isinstance(r["created_ms"], int) for r in (res[0], res[3]))
