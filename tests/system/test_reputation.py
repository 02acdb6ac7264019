"""Caller reputation (issue 7, docs/reputation.md): short hang-ups and spam per
caller ID and project over 1 h / 24 h / 7 d in GET /v1/project and /metrics;
a caller ID over the threshold is slowed down (pace_factor halved, once per
cooldown, with the audit entry and the webhook event
caller_id.reputation_warning) and its calls are dispatched at the project's
pacing x pace_factor while the other caller IDs keep the project's pace; once
its rate is under half the threshold it recovers (x1.5 a cooldown) back to 1,
with the audit entry caller_id.reputation_recovered.

Sim calls: the callee hangs up when the talk time is over. The harness scales
the short hang-up threshold like the sim's times (0.06 s): `sim_talk_ms` 10
is a short hang-up, the usual talk (250 ms) is not; digit 3 ends spam.
"""

from __future__ import annotations

import random
import statistics
import time
from datetime import datetime

from harness import wait_until
from helpers_pipeline import NO_LIMITS, assert_accepted, phone, wait_all_final
from helpers_webhooks import Receiver

COOLDOWN_S = 5
SYSTEM_ENV = {
    "OUTDIAL_WEBHOOK_ALLOW_PRIVATE": "1",     # the receiver lives on 127.0.0.1
    "OUTDIAL_REPUTATION_INTERVAL_MS": "500",
    "OUTDIAL_REPUTATION_COOLDOWN_S": str(COOLDOWN_S),
    "OUTDIAL_REPUTATION_THRESHOLD": "0.5",
    "OUTDIAL_REPUTATION_MIN_ANSWERED": "4",
}
PACING = 120  # calls a minute: one every 0.5 s; a caller ID at pace_factor 0.5, one a second
SHORT = {"sim_talk_ms": 10}
ACTOR = {"type": "system", "service": "outcome"}


def _calls(p, caller_id, digits, metadata=None):
    ids = []
    for d in digits:
        body = {"caller_id": caller_id}
        if metadata is not None:
            body["metadata"] = metadata
        ids.append(assert_accepted(p.api.create_call(phone(d), **body))["id"])
    return ids


def _reputation(p):
    r = p.api.get("/v1/project")
    assert r.status_code == 200, r.text
    return r.json()["reputation"]


def _caller(rep, number):
    found = [c for c in rep["caller_ids"] if c["phone"] == number]
    assert len(found) == 1, rep
    return found[0]


def _window(answered, short, spam):
    return {"answered": answered, "short_hangups": short, "spam": spam,
            "short_hangup_rate": round(short / answered, 4) if answered else None,
            "spam_rate": round(spam / answered, 4) if answered else None}


def _audit(p, action, number):
    rows = p.admin.get("/v1/audit-log", params={"action": action, "limit": 100}).json()["data"]
    return sorted((a for a in rows if a["object_id"] == number and a["action"] == action), key=lambda a: a["id"])


def _spacing(system, ids):
    """The mean time between consecutive dispatches of these calls, in seconds."""
    at = [float(x[0]) for x in system.rows(
        "SELECT extract(epoch FROM dispatched_at) FROM calls WHERE id IN ("
        + ",".join(f"'{i}'" for i in ids) + ") ORDER BY dispatched_at")]
    assert len(at) == len(ids)
    return statistics.mean(b - a for a, b in zip(at, at[1:]))


def _metric(system, name, **labels):
    key = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return system["outcome"].metrics().get(key)


def test_rates_slow_down_and_recovery(system):
    p = system.new_project(pacing=PACING, **NO_LIMITS)
    good, bad = p.caller_id, f"+1415556{random.randint(1000, 9999)}"   # B keeps its pace, A is slowed
    worst = f"+1415557{random.randint(1000, 9999)}"                    # C: every call bad, never better
    for number in (bad, worst):
        system.ctl("caller-id", "add", p.id, number, json_out=False)
    secret = None
    with Receiver() as rx:
        r = p.admin.post("/v1/webhooks", json={"url": rx.url("/rep"),
                                               "event_types": ["caller_id.reputation_warning"]})
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]

        # ---- the signals: A 4 good then 2 short + 2 spam (4/8 = 0.5: at the threshold only once all are in);
        # B 4 good, 1 short, 1 not answered (not counted); C 2 short + 2 spam
        first = _calls(p, bad, [0, 1, 2, 0]) + _calls(p, good, [0, 1, 2, 0]) + _calls(p, good, [1], SHORT) \
            + _calls(p, good, [4], {"sim_ring_ms": 10}) + _calls(p, worst, [0, 1], SHORT) + _calls(p, worst, [3, 3])
        ended = wait_all_final(system, first, timeout=60)
        shorts = [c for c in first if "short hang-up by the callee" in p.api.call(c)["events"][-1]["detail"]]
        assert len(shorts) == 3, shorts  # B 1, C 2 (the sim's callee hangs up); A's come in the second round
        assert sum(1 for c in ended.values() if c["final_state"] == "completed") == 13
        t_bad = time.time()
        second = _calls(p, bad, [0, 1], SHORT) + _calls(p, bad, [3, 3])
        wait_all_final(system, second, timeout=60)

        rep = _reputation(p)
        for w in ("1h", "24h", "7d"):
            assert rep["project"][w] == _window(17, 5, 4), rep
            assert _caller(rep, bad)[w] == _window(8, 2, 2), rep
            assert _caller(rep, good)[w] == _window(5, 1, 0), rep
            assert _caller(rep, worst)[w] == _window(4, 2, 2), rep
        assert _caller(rep, good)["pace_factor"] == 1, rep

        # /metrics of the outcome service: the same rates, refreshed every interval
        wait_until(lambda: _metric(system, "outdial_reputation_short_hangup_rate", project=p.id, caller_id=bad,
                                   window="1h") == 0.25, timeout=10, what="A's short hang-up rate gauge")
        for w in ("1h", "24h", "7d"):
            assert _metric(system, "outdial_reputation_spam_rate", project=p.id, caller_id=bad, window=w) == 0.25
            assert _metric(system, "outdial_reputation_short_hangup_rate", project=p.id, caller_id=good,
                           window=w) == 0.2
            assert _metric(system, "outdial_reputation_spam_rate", project=p.id, caller_id=good, window=w) == 0
            assert abs(_metric(system, "outdial_reputation_project_short_hangup_rate", project=p.id,
                               window=w) - 5 / 17) < 1e-9
        assert _metric(system, "outdial_reputation_pace_factor", project=p.id, caller_id=good) == 1

        # ---- A crosses the threshold: halved once, audited, a signed webhook
        wait_until(lambda: _audit(p, "caller_id.reputation_warning", bad), timeout=15, interval=0.1,
                   what="A's reputation warning")
        # at once, good calls: the first brings A's rate under the threshold (4/9) well within the cooldown
        slowed = _calls(p, bad, [0, 1, 2, 0, 1, 2])
        warn = _audit(p, "caller_id.reputation_warning", bad)
        assert len(warn) == 1, warn
        w0 = warn[0]
        assert w0["actor"] == ACTOR and w0["object_type"] == "caller_id", w0
        ch = w0["changes"]
        assert ch["pace_factor"] == {"from": 1, "to": 0.5}, ch
        assert (ch["window"], ch["answered"], ch["short_hangups"], ch["spam"], ch["rate"]) == ("1h", 8, 2, 2, 0.5), ch
        assert ch["threshold"] == 0.5, ch
        hits = rx.wait_for(lambda hs: [h for h in hs if h.type == "caller_id.reputation_warning"
                                       and h.json()["data"]["caller_id"] == bad], path="/rep", timeout=20,
                           what="the caller_id.reputation_warning webhook")
        hit = hits[0]
        assert hit.valid_for(secret), "the webhook is signed with the endpoint's secret"
        data = hit.json()["data"]
        assert data["project_id"] == p.id and data["pace_factor"] == {"from": 1, "to": 0.5}, data
        assert data["answered"] == 8 and data["rate"] == 0.5, data

        # ---- A's calls go at half the project's pace ...
        wait_all_final(system, slowed, timeout=60)
        a_gap = _spacing(system, slowed)
        assert 0.85 <= a_gap <= 1.6, f"A at pace factor 0.5: one call a second, not every {a_gap:.2f} s"
        assert _caller(_reputation(p), bad)["pace_factor"] == 0.5   # 4/14: under the threshold, over half of it
        # ... while B's keep the project's
        fast = _calls(p, good, [0, 1, 2, 0, 1, 2])
        wait_all_final(system, fast, timeout=60)
        b_gap = _spacing(system, fast)
        assert b_gap <= 0.7, f"B at the project's pace (0.5 s), not every {b_gap:.2f} s"
        assert a_gap > 1.4 * b_gap, (a_gap, b_gap)
        rep = _reputation(p)
        assert _caller(rep, bad)["pace_factor"] == 0.5 and _caller(rep, good)["pace_factor"] == 1, rep
        assert len(_audit(p, "caller_id.reputation_warning", bad)) == 1, "halved once: the rate went under"
        assert _metric(system, "outdial_reputation_pace_factor", project=p.id, caller_id=bad) == 0.5

        # ---- recovery: good calls bring A's rate under half the threshold (4/17); x1.5 a cooldown, back to 1
        better = _calls(p, bad, [0, 1, 2, 0, 1, 2])
        wait_all_final(system, better, timeout=60)
        wait_until(lambda: _audit(p, "caller_id.reputation_recovered", bad), timeout=4 * COOLDOWN_S + 10,
                   interval=0.2, what="A's recovery")
        rec = _audit(p, "caller_id.reputation_recovered", bad)
        assert len(rec) == 1 and rec[0]["actor"] == ACTOR, rec
        assert rec[0]["changes"]["pace_factor"] == {"from": 0.75, "to": 1}, rec
        assert _caller(_reputation(p), bad)["pace_factor"] == 1
        wait_until(lambda: _metric(system, "outdial_reputation_pace_factor", project=p.id, caller_id=bad) == 1,
                   timeout=5, what="A's pace factor gauge back at 1")
        # the step in between (0.5 -> 0.75) is logged, not audited
        steps = [ln for ln in system["outcome"].log_lines() if bad in str(ln.get("msg", ""))]
        assert any("0.5 -> 0.75" in ln["msg"] for ln in steps), steps[-5:]
        assert any("0.75 -> 1" in ln["msg"] for ln in steps), steps[-5:]

        # ---- C never got better: halved once per cooldown, each a warning and a webhook
        worst_warn = _audit(p, "caller_id.reputation_warning", worst)
        elapsed = time.time() - t_bad
        assert 2 <= len(worst_warn) <= 4, worst_warn
        assert len(worst_warn) <= elapsed / COOLDOWN_S + 1, (len(worst_warn), elapsed)
        f = 1
        for a in worst_warn:
            assert a["changes"]["pace_factor"] == {"from": f, "to": f / 2}, worst_warn
            f /= 2
        at = [datetime.fromisoformat(a["at"].replace("Z", "+00:00")).timestamp() for a in worst_warn]
        assert all(b - a >= COOLDOWN_S - 0.05 for a, b in zip(at, at[1:])), at
        rx.wait_for(lambda hs: len([h for h in hs if h.json()["data"]["caller_id"] == worst]) >= len(worst_warn),
                    path="/rep", timeout=20, what="one webhook per warning of C")
