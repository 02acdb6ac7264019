"""/metrics of every service (issue 8): the exposition parsed strictly, the
README's one table of metrics against what each service exposes (both ways,
types and label names), the values moved by the traffic this module drives,
and the Grafana dashboard against the table.

The traffic: calls accepted and ending in every sim final state, calls
rejected with several problem codes, 429s, an idempotent replay, and
webhook deliveries that succeed at once, after a retry, and never.
Every expected number is counted from the answers the test got (HTTP
statuses, problem codes, the calls' final states, the delivery logs), not
written down in advance.
"""

from __future__ import annotations

import collections
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness import REPO, wait_until
from helpers_pipeline import NO_LIMITS, SCENARIO, assert_accepted, in_seconds, phone, wait_all_final
from helpers_webhooks import Receiver

SYSTEM_ENV = {
    "OUTDIAL_WEBHOOK_ALLOW_PRIVATE": "1",      # the receivers live on 127.0.0.1
    "OUTDIAL_WEBHOOK_RETRY_SCHEDULE": "1,1",   # 3 attempts ~1 s apart, then failed
    "OUTDIAL_WEBHOOK_TIMEOUT_MS": "2000",
    "OUTDIAL_WEBHOOK_POLL_MS": "100",
    "OUTDIAL_REPUTATION_INTERVAL_MS": "500",  # the reputation gauges appear soon after answered calls
}
SERVICES = ("ingress", "scheduler", "dialer", "outcome")
README = REPO / "README.md"
DASHBOARD = REPO / "deploy" / "grafana" / "outdial.json"


# ------------------------------------------------------------ strict parser


NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")


class ExpositionError(AssertionError):
    pass


@dataclass
class Family:
    name: str
    type: str
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def labelnames(self) -> set[str]:
        return {k for _, labels, _ in self.samples for k in labels if k != "le"}

    def value(self, **labels) -> float:
        """The sample of the family's own name with exactly these labels (0 if absent)."""
        for name, ls, v in self.samples:
            if name == self.name and ls == labels:
                return v
        return 0.0

    def by(self, label: str, sample: str | None = None) -> dict[str, float]:
        out: dict[str, float] = collections.defaultdict(float)
        for name, ls, v in self.samples:
            if name == (sample or self.name):
                out[ls.get(label, "")] += v
        return dict(out)


def _value(s: str, where: str) -> float:
    if s in ("NaN", "+Inf", "-Inf"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ExpositionError(f"{where}: value {s!r} is not a number of the text format")
    return float(s)


def _labels(s: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(s):
        m = LABEL_RE.match(s, pos)
        if not m:
            raise ExpositionError(f"{where}: malformed labels at {s[pos:]!r}")
        k, v = m.group(1), m.group(2)
        if k in out or k.startswith("__"):
            raise ExpositionError(f"{where}: label {k!r} repeated or reserved")
        out[k] = v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        pos = m.end()
        if pos < len(s):
            if s[pos] != ",":
                raise ExpositionError(f"{where}: expected ',' between labels in {s!r}")
            pos += 1
    return out


def parse_exposition(text: str) -> dict[str, Family]:
    """Prometheus text format 0.0.4, strictly: one HELP and one TYPE per
    family before its samples, a family's samples together, valid names,
    labels and values, no series twice, counters named *_total and never
    negative, histograms as _bucket{le} (ascending, cumulative, +Inf =
    _count), _sum and _count."""
    if not text.endswith("\n"):
        raise ExpositionError("the exposition does not end with a line feed")
    fams: dict[str, Family] = {}
    closed: set[str] = set()
    current: str | None = None
    seen: set[tuple[str, tuple]] = set()
    for no, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {no} {line!r}"
        if line == "":
            raise ExpositionError(f"{where}: empty line")
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                raise ExpositionError(f"{where}: a comment that is neither HELP nor TYPE")
            name = parts[2]
            if not NAME_RE.fullmatch(name):
                raise ExpositionError(f"{where}: bad metric name")
            if name in closed or (current != name and name in fams):
                raise ExpositionError(f"{where}: family {name} described twice or apart")
            if current is not None and current != name:
                closed.add(current)
            current = name
            fam = fams.setdefault(name, Family(name, "", ""))
            if parts[1] == "HELP":
                if fam.help or fam.samples:
                    raise ExpositionError(f"{where}: second HELP, or HELP after samples")
                text_ = parts[3] if len(parts) > 3 else ""
                if re.search(r"\\[^\\n]", text_.replace("\\\\", "")):
                    raise ExpositionError(f"{where}: HELP with an escape other than \\\\ and \\n")
                fam.help = text_ or " "
            else:
                if fam.type or fam.samples or len(parts) != 4 or parts[3] not in TYPES:
                    raise ExpositionError(f"{where}: bad, second or late TYPE")
                fam.type = parts[3]
            continue
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)", line)
        if not m:
            raise ExpositionError(f"{where}: not a sample line")
        sname, labels, value = m.group(1), _labels(m.group(2) or "", where), _value(m.group(3), where)
        if current is None:
            raise ExpositionError(f"{where}: sample before any TYPE")
        fam = fams[current]
        if not fam.type or not fam.help:
            raise ExpositionError(f"{where}: sample of {current} before its HELP and TYPE")
        allowed = ({current + s for s in ("_bucket", "_sum", "_count")} if fam.type == "histogram"
                   else {current})
        if sname not in allowed:
            raise ExpositionError(f"{where}: sample {sname} in family {current} ({fam.type})")
        key = (sname, tuple(sorted(labels.items())))
        if key in seen:
            raise ExpositionError(f"{where}: series repeated")
        seen.add(key)
        if fam.type == "histogram" and (sname.endswith("_bucket") != ("le" in labels)):
            raise ExpositionError(f"{where}: le belongs on _bucket samples only")
        fam.samples.append((sname, labels, value))
    for fam in fams.values():
        if not fam.type or not fam.help:
            raise ExpositionError(f"{fam.name}: HELP or TYPE missing")
        if fam.type == "counter":
            if not fam.name.endswith("_total"):
                raise ExpositionError(f"counter {fam.name} does not end in _total")
            if any(v < 0 or math.isnan(v) for _, _, v in fam.samples):
                raise ExpositionError(f"counter {fam.name} has a negative or NaN value")
        elif fam.name.endswith("_total"):
            raise ExpositionError(f"{fam.type} {fam.name} ends in _total, which is for counters")
        if re.search(r"(_ms|_milliseconds|_us|_minutes|_hours)(_|$)", fam.name) or (
                re.search(r"(latency|duration|_time|_seconds)", fam.name) and not re.search(
                    r"_seconds(_total)?$", fam.name)):
            raise ExpositionError(f"{fam.name}: a duration is named in base units, _seconds")
        if fam.type == "histogram":
            _check_histogram(fam)
    return fams


def _check_histogram(fam: Family) -> None:
    series: dict[tuple, dict] = collections.defaultdict(lambda: {"le": []})
    for name, labels, v in fam.samples:
        key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        if name.endswith("_bucket"):
            series[key]["le"].append((_value(labels["le"], fam.name), v))
        else:
            series[key][name[len(fam.name) + 1:]] = v
    for key, s in series.items():
        les = s["le"]
        if "sum" not in s or "count" not in s or not les:
            raise ExpositionError(f"histogram {fam.name}{dict(key)} lacks _bucket, _sum or _count")
        bounds = [b for b, _ in les]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds) or bounds[-1] != math.inf:
            raise ExpositionError(f"histogram {fam.name}: le {bounds} not ascending to +Inf")
        counts = [c for _, c in les]
        if counts != sorted(counts) or counts[-1] != s["count"]:
            raise ExpositionError(f"histogram {fam.name}: buckets {counts} not cumulative to _count {s['count']}")


def scrape(svc) -> dict[str, Family]:
    r = svc.get("/metrics")
    assert r.status_code == 200, f"{svc.name} /metrics: {r.status_code}"
    assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
    return parse_exposition(r.text)


def scrape_all(system) -> dict[str, dict[str, Family]]:
    return {name: scrape(system[name]) for name in SERVICES}


# ------------------------------------------------------ the README's table


@dataclass
class Row:
    name: str
    type: str
    labels: set[str]
    services: set[str]
    engine_only: bool


def readme_table() -> dict[str, Row]:
    text = README.read_text()
    m = re.search(r"^## Metrics\n(.*?)^## ", text, re.S | re.M)
    assert m, "README has no Metrics section"
    section = m.group(1)
    rows: dict[str, Row] = {}
    tables = 0
    in_table = False
    for line in section.splitlines():
        if line.startswith("| metric |"):
            tables += 1
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if not in_table or line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"README metrics row with {len(cells)} cells: {line}"
        name = cells[0].strip("`")
        assert name not in rows, f"{name} twice in the README table"
        # a label's values may be listed in parentheses: only the names before them count
        labels = set(re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", cells[2])))
        svc = cells[3]
        services = set(SERVICES) if "all four" in svc else {s for s in SERVICES if re.search(rf"\b{s}\b", svc)}
        assert services, f"{name}: no service in {svc!r}"
        rows[name] = Row(name, cells[1], labels, services, "OUTDIAL_ENGINE_URL" in svc)
    assert tables == 1, f"the Metrics section has {tables} tables of metrics; it must have one"
    return rows


# ------------------------------------------------------------- the traffic


@dataclass
class Traffic:
    accepted: int = 0
    problems: collections.Counter = field(default_factory=collections.Counter)  # code -> count (4xx)
    status: collections.Counter = field(default_factory=collections.Counter)
    replays: int = 0
    dialed: list[str] = field(default_factory=list)

    def post(self, api, phone_: str, **kw):
        r = api.create_call(phone_, **kw)
        self.status[r.status_code] += 1
        if r.headers.get("idempotent-replayed") == "true":
            self.replays += 1
        elif r.status_code == 202:
            self.accepted += 1
        elif 400 <= r.status_code < 500:
            self.problems[r.json()["code"]] += 1
        return r


def _endpoint(api, url: str) -> dict:
    r = api.post("/v1/webhooks", json={"url": url, "event_types": ["call.completed"]})
    assert r.status_code == 201, r.text
    return r.json()


def _deliveries(api, wid: str) -> list[dict]:
    r = api.get(f"/v1/webhooks/{wid}/deliveries", params={"limit": 200})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def delta(before: dict[str, Family], after: dict[str, Family], name: str, sample: str | None = None,
          **labels) -> float:
    def v(fams):
        fam = fams.get(name)
        if fam is None:
            return 0.0
        return sum(x for n, ls, x in fam.samples if n == (sample or name) and ls == labels)
    return v(after) - v(before)


def family_sum(fams: dict[str, Family], name: str, sample: str | None = None) -> float:
    fam = fams.get(name)
    return sum(v for n, _, v in fam.samples if n == (sample or name)) if fam else 0.0


@pytest.fixture(scope="module")
def driven(system):
    """Drives the module's traffic once; returns (before, after, traffic, facts)."""
    before = scrape_all(system)
    t = Traffic()
    p = system.new_project(pacing=60000, scopes=("outbound:trigger", "sessions:read"), **NO_LIMITS)

    # accepted calls, one per sim digit (every final state), and one with an Idempotency-Key replayed
    for d in range(10):
        t.dialed.append(assert_accepted(t.post(p.api, phone(d)))["id"])
    ph = phone(0)
    first = t.post(p.api, ph, idempotency_key="metrics-replay-1")
    t.dialed.append(assert_accepted(first)["id"])
    again = t.post(p.api, ph, idempotency_key="metrics-replay-1")
    assert again.status_code == 202 and again.headers.get("idempotent-replayed") == "true", again.text

    # rejected calls with several codes
    for bad in ("+12", "34612345670", "+3461234567x"):
        t.post(p.api, bad)
    for _ in range(2):
        t.post(p.api, phone(0), scenario="no_such_scenario")
    dnc = phone(1)
    system.psql(f"insert into dnc (project_id, phone) values ('{p.id}', '{dnc}')")
    t.post(p.api, dnc)
    t.post(system.api(), phone(0))  # no key: 401

    # 429s: a project allowed 2 calls a minute (far-future calls: never dialed)
    slow = system.new_project(calls_per_min=2, requests_per_hour=1000)
    far = in_seconds(86400)
    for _ in range(10):
        if t.post(slow.api, phone(0), scheduled_for=far).status_code == 429:
            break
    t.post(slow.api, phone(0), scheduled_for=far)  # a second 429
    assert t.problems["rate_limited"] >= 2, t.status

    # webhooks: one call.completed to three endpoints: 200, 500 then 200, always 500
    rx = Receiver()
    try:
        rx.plan("/ok", [], then=200)
        rx.plan("/flaky", [500], then=200)
        rx.plan("/down", [], then=500)
        w = system.new_project(pacing=60000, scopes=("outbound:trigger", "sessions:read"), **NO_LIMITS)
        eps = {path: _endpoint(w.admin, rx.url(path)) for path in ("/ok", "/flaky", "/down")}
        t.dialed.append(assert_accepted(t.post(w.api, phone(0)))["id"])

        calls = wait_all_final(system, t.dialed, timeout=60)
        deliveries: dict[str, list[dict]] = {}

        def settled():
            for path, ep in eps.items():
                deliveries[path] = _deliveries(w.admin, ep["id"])
            return all(ds and all(d["status"] != "pending" for d in ds) for ds in deliveries.values())
        wait_until(settled, 30, 0.2, what=f"the webhook deliveries to settle: {deliveries}")
        hits = rx.hits()
    finally:
        rx.close()

    # the gauges settle: nothing in flight, the groups caught up, reputation read
    def quiet():
        now = scrape_all(system)
        lag = [v for s in ("scheduler", "dialer", "outcome")
               for _, _, v in now[s]["outdial_kafka_consumer_lag"].samples]
        return (now["dialer"]["outdial_dialer_calls_in_flight"].value() == 0
                and now["scheduler"]["outdial_scheduler_pending_calls"].value() == 0
                and all(v == 0 for v in lag)
                and "outdial_reputation_pace_factor" in now["outcome"]
                and now["outcome"]["outdial_webhook_inflight"].value() == 0) and now
    after = wait_until(quiet, 30, 0.5, what="in-flight gauges at 0 and consumer lag at 0")
    return before, after, t, dict(calls=calls, deliveries=deliveries, hits=hits)


# ---------------------------------------------------------------- the tests


def test_parser_refuses_what_the_format_forbids():
    """The strict parser is not a rubber stamp: each of these breaks one rule."""
    good = ("# HELP a_total x\n# TYPE a_total counter\na_total{code=\"1\"} 1\n"
            "# HELP h_seconds y\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 1\n"
            "h_seconds_bucket{le=\"+Inf\"} 2\nh_seconds_sum 3\nh_seconds_count 2\n")
    assert set(parse_exposition(good)) == {"a_total", "h_seconds"}
    bad = {
        "no TYPE": "# HELP a_total x\na_total 1\n",
        "HELP twice": "# HELP a_total x\n# HELP a_total x\n# TYPE a_total counter\na_total 1\n",
        "family apart": good + "# HELP a_total x\n",
        "counter without _total": "# HELP a x\n# TYPE a counter\na 1\n",
        "negative counter": "# HELP a_total x\n# TYPE a_total counter\na_total -1\n",
        "unescaped quote": "# HELP a_total x\n# TYPE a_total counter\na_total{c=\"\"\"} 1\n",
        "bad escape": "# HELP a_total x\n# TYPE a_total counter\na_total{c=\"\\t\"} 1\n",
        "series twice": "# HELP a_total x\n# TYPE a_total counter\na_total 1\na_total 2\n",
        "bad value": "# HELP a_total x\n# TYPE a_total counter\na_total one\n",
        "unit": "# HELP a_ms x\n# TYPE a_ms gauge\na_ms 1\n",
        "no +Inf": "# HELP h_seconds y\n# TYPE h_seconds histogram\nh_seconds_bucket{le=\"1\"} 1\n"
                   "h_seconds_sum 3\nh_seconds_count 1\n",
        "not cumulative": good.replace("le=\"+Inf\"} 2", "le=\"+Inf\"} 0").replace("count 2", "count 0"),
        "no final line feed": good[:-1],
    }
    for why, text in bad.items():
        with pytest.raises(ExpositionError):
            parse_exposition(text)
            pytest.fail(f"accepted: {why}")


def test_every_service_exposes_strict_prometheus_text(system, driven):
    _, after, _, _ = driven
    for name in SERVICES:
        fams = after[name]
        assert any(n.startswith("outdial_") for n in fams), f"{name}: no outdial_ metric"
        foreign = sorted(n for n in fams if not n.startswith("outdial_"))
        assert not foreign, f"{name} exposes families outside outdial_: {foreign}"


def test_readme_table_matches_what_each_service_exposes(system, driven):
    """Every family in the table is exposed by exactly the services it
    names, with the type and label names it says; every family exposed is
    in the table. The engine's families come from a dialer with an engine."""
    _, after, _, _ = driven
    rows = readme_table()
    engine = system.add_service("dialer_engine", "outdial-dialer",
                                OUTDIAL_ENGINE_URL="http://127.0.0.1:9/unused")
    try:
        engine.wait_ready(20)
        exposed = dict(after)
        engine_fams = scrape(engine)
    finally:
        engine.stop(timeout=10)
    problems = []
    for name, fams in [*exposed.items(), ("dialer (engine)", engine_fams)]:
        for fam in fams.values():
            row = rows.get(fam.name)
            if row is None:
                problems.append(f"{name} exposes {fam.name}, which the README table lacks")
                continue
            svc = "dialer" if name.startswith("dialer") else name
            if svc not in row.services:
                problems.append(f"{name} exposes {fam.name}; the table says {sorted(row.services)}")
            if fam.type != row.type:
                problems.append(f"{fam.name} is a {fam.type}; the table says {row.type}")
            if fam.samples and fam.labelnames() != row.labels:
                problems.append(f"{fam.name} has labels {sorted(fam.labelnames())}; "
                                f"the table says {sorted(row.labels)}")
    for row in rows.values():
        for svc in row.services:
            fams = engine_fams if row.engine_only else exposed[svc]
            if row.name not in fams:
                problems.append(f"the table says {svc} exposes {row.name}; it does not")
            if row.engine_only and row.name in exposed[svc]:
                problems.append(f"{row.name} is exposed by a dialer without an engine")
    assert not problems, "\n".join(problems)


def test_values_moved_by_the_traffic(system, driven):
    before, after, t, facts = driven
    ing = lambda n, **kw: delta(before["ingress"], after["ingress"], n, **kw)  # noqa: E731

    # ingress: accepted, rejected by code, 429s, replays
    assert ing("outdial_ingress_calls_accepted_total") == t.accepted, (t.accepted, t.status)
    rejected = after["ingress"]["outdial_ingress_calls_rejected_total"]
    codes = set(rejected.by("code")) | set(t.problems)
    got = {c: ing("outdial_ingress_calls_rejected_total", code=c) for c in codes}
    want = {c: float(t.problems.get(c, 0)) for c in codes}
    assert got == want, f"rejected by code: exposed {got}, answered {want}"
    assert {"invalid_phone", "unknown_scenario", "phone_on_dnc_list", "unauthorized", "rate_limited"} <= set(
        t.problems), t.problems
    assert ing("outdial_ingress_rate_limited_total") == t.status[429] == t.problems["rate_limited"]
    assert ing("outdial_ingress_idempotent_replays_total") == t.replays == 1
    n = delta(before["ingress"], after["ingress"], "outdial_ingress_accept_seconds",
              "outdial_ingress_accept_seconds_count")
    assert n == t.accepted, f"{n} accept latencies for {t.accepted} accepted calls"

    # scheduler: every dialed call dispatched once, each with its due lag
    sch = lambda n, s=None: delta(before["scheduler"], after["scheduler"], n, s)  # noqa: E731
    assert sch("outdial_scheduler_dispatched_total") == len(t.dialed)
    assert sch("outdial_scheduler_due_lag_seconds", "outdial_scheduler_due_lag_seconds_count") == len(t.dialed)
    assert after["scheduler"]["outdial_scheduler_pending_calls"].value() == 0

    # dialer: results by final state = the calls' final states
    states = collections.Counter(c["final_state"] for c in facts["calls"].values())
    assert len(states) >= 7, f"the sim digits give seven final states: {states}"
    results = after["dialer"]["outdial_dialer_results_total"].by("final_state")
    for fs in set(results) | set(states):
        got = delta(before["dialer"], after["dialer"], "outdial_dialer_results_total", final_state=fs)
        assert got == states.get(fs, 0), f"results_total{{final_state={fs!r}}} moved {got}, calls {states}"
    assert delta(before["dialer"], after["dialer"], "outdial_dialer_dials_total") == len(t.dialed)
    assert after["dialer"]["outdial_dialer_calls_in_flight"].value() == 0
    assert after["dialer"]["outdial_dialer_calls_max"].value() == float(
        system.dialer.env.get("OUTDIAL_DIALER_MAX_CALLS", "100"))

    # outcome: one latency per event handed to od_apply_events; at least dialing and the end per call
    out = lambda n, s=None: delta(before["outcome"], after["outcome"], n, s)  # noqa: E731
    applied = out("outdial_outcome_events_applied_total")
    handled = applied + out("outdial_outcome_events_ignored_total")
    assert out("outdial_outcome_apply_latency_seconds", "outdial_outcome_apply_latency_seconds_count") == handled
    assert applied >= 2 * len(t.dialed), (applied, len(t.dialed))

    # webhooks: attempts by answer, deliveries by final status, retries = attempts after the first
    answers = collections.Counter(h.answer for h in facts["hits"])
    kind = lambda a: ("ok" if 200 <= a < 300 else "retry" if a in (408, 429) or a >= 500  # noqa: E731
                      else "fail")
    want_attempts = {r: sum(v for a, v in answers.items() if kind(a) == r) for r in ("ok", "retry", "fail")}
    got_attempts = {r: out_l("outdial_webhook_attempts_total", before, after, result=r) for r in want_attempts}
    assert got_attempts == want_attempts, (got_attempts, answers)
    ds = [d for dl in facts["deliveries"].values() for d in dl]
    statuses = collections.Counter(d["status"] for d in ds)
    assert statuses == {"succeeded": 2, "failed": 1}, ds  # /ok and /flaky succeed, /down gives up
    for r in ("succeeded", "failed"):
        assert out_l("outdial_webhook_deliveries_total", before, after, result=r) == statuses[r], (r, ds)
    retries = sum(d["attempts"] - 1 for d in ds)
    assert retries >= 2 and out("outdial_webhook_retries_total") == retries, (retries, ds)
    assert sum(d["attempts"] for d in ds) == len(facts["hits"]), (ds, answers)

    # no client errors while all this ran; the consumer groups caught up
    for name in SERVICES:
        for fam in ("outdial_pg_errors_total", "outdial_kafka_errors_total"):
            moved = family_sum(after[name], fam) - family_sum(before[name], fam)
            assert moved == 0, f"{name} {fam} moved by {moved}"
        assert family_sum(after[name], "outdial_pg_connections_ready") >= 1, name
    for name in ("scheduler", "dialer", "outcome"):
        lag = after[name]["outdial_kafka_consumer_lag"].samples
        assert lag and all(v == 0 for _, _, v in lag), f"{name} consumer lag {lag}"


def out_l(name: str, before, after, **labels) -> float:
    return delta(before["outcome"], after["outcome"], name, **labels)


# --------------------------------------------------------------- dashboard


def test_grafana_dashboard_uses_the_table():
    """deploy/grafana/outdial.json: importable (uid, title, schemaVersion, a
    Prometheus data source variable used by every panel), rows per service,
    and every PromQL expression names families of the table (a histogram
    through _bucket inside histogram_quantile, or _sum / _count), rates only
    of counters."""
    rows = readme_table()
    dash = json.loads(DASHBOARD.read_text())
    assert isinstance(dash.get("uid"), str) and dash["uid"], "uid"
    assert isinstance(dash.get("title"), str) and dash["title"], "title"
    assert isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 30, dash.get("schemaVersion")
    variables = dash["templating"]["list"]
    ds_vars = [v for v in variables if v.get("type") == "datasource" and v.get("query") == "prometheus"]
    assert [v["name"] for v in ds_vars] == ["datasource"], variables

    panels = []
    for p in dash["panels"]:
        panels.append(p)
        panels += p.get("panels", [])
    row_titles = [p["title"].lower() for p in panels if p["type"] == "row"]
    for svc in ("ingress", "scheduler", "dialer", "outcome", "webhooks"):
        assert any(svc in r for r in row_titles), f"no row for {svc}: {row_titles}"
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids repeat"

    used: set[str] = set()
    problems = []
    for p in panels:
        if p["type"] == "row":
            continue
        assert p.get("datasource", {}).get("uid") == "${datasource}", f"panel {p['title']!r}: datasource"
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for tgt in p["targets"]:
            expr = tgt["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("[") == expr.count("]"), expr
            for m in re.finditer(r"\b(outdial_[a-z0-9_]+)", expr):
                name = m.group(1)
                fam, part = name, None
                for suffix in ("_bucket", "_sum", "_count"):
                    base = name[: -len(suffix)]
                    if name.endswith(suffix) and rows.get(base) and rows[base].type == "histogram":
                        fam, part = base, suffix
                row = rows.get(fam)
                if row is None:
                    problems.append(f"{p['title']!r}: {name} is not in the README table")
                    continue
                used.add(fam)
                if row.type == "histogram" and part is None:
                    problems.append(f"{p['title']!r}: histogram {name} without _bucket/_sum/_count")
                if part == "_bucket" and "histogram_quantile" not in expr:
                    problems.append(f"{p['title']!r}: {name} outside histogram_quantile")
                inside_rate = re.search(r"\b(rate|increase|irate)\(\s*" + re.escape(name) + r"\b", expr)
                if inside_rate and row.type == "gauge":
                    problems.append(f"{p['title']!r}: rate() of the gauge {name}")
                if row.type == "counter" and not inside_rate:
                    problems.append(f"{p['title']!r}: the counter {name} shown raw, not through rate()")
            if "histogram_quantile" in expr:
                assert re.search(r"by \((le|le, [a-z_, ]+)\)", expr), f"histogram_quantile not by le: {expr}"
    assert not problems, "\n".join(problems)
    # the list: each of these is on the dashboard
    for fam in ("outdial_ingress_calls_accepted_total", "outdial_ingress_calls_rejected_total",
                "outdial_ingress_rate_limited_total", "outdial_ingress_idempotent_replays_total",
                "outdial_ingress_accept_seconds", "outdial_scheduler_pending_calls",
                "outdial_scheduler_due_lag_seconds", "outdial_dialer_calls_in_flight",
                "outdial_dialer_results_total", "outdial_outcome_apply_latency_seconds",
                "outdial_kafka_consumer_lag", "outdial_webhook_attempts_total",
                "outdial_webhook_deliveries_total", "outdial_webhook_retries_total",
                "outdial_pg_errors_total", "outdial_kafka_errors_total"):
        assert fam in used, f"the dashboard does not show {fam}"
