#!/usr/bin/env python3
"""bench/scale-out: dialer throughput with 1, 2 and 4 dialers (a scaling curve).

For each dialer count, a fresh database and topics (8 partitions) on one
PostgreSQL + Kafka of its own (deploy/local/infra.sh, like the system tests;
no `make run` needed): one ingress, scheduler and outcome; CALLS calls posted
with pacing lifted and dispatched while no dialer runs, so a backlog waits in
`calls.dispatch`; then N dialers start together and drain it. The calls
belong to 8 projects with pacing lifted. Throughput is
the calls dialed and ended per second, from the first dial to the last end
(PostgreSQL's clock and the sim's dial log).

Two call profiles:
  talk   each call rings 0.5 s and talks TALK_MS (default 3,000 ms): a dialer
         holds OUTDIAL_DIALER_MAX_CALLS (100) calls at once, so one dialer's
         ceiling is its slots / call time; more dialers, more slots
  zero   ring and talk ~0 s: what the machine's cores do per call (claim,
         events, lease release, outcome), the CPU-bound ceiling

  bench/scale-out/run.py [CALLS] [PROFILE ...]     # default 3000 talk zero
Needs the build (build/bin; OUTDIAL_BUILD_DIR overrides).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "system"))

import requests  # noqa: E402

import harness  # noqa: E402
from harness import Infra, System, wait_until  # noqa: E402
from helpers_pipeline import parse_ts  # noqa: E402

DIALERS = (1, 2, 4)
PARTITIONS = 8
PROJECTS = 8  # pacing lifted; several, as in production (a project's claims share its pacing row)
TALK_MS = int(os.environ.get("TALK_MS", "3000"))
PROFILES = {"talk": {"sim_ring_ms": 500, "sim_talk_ms": TALK_MS}, "zero": {"sim_ring_ms": 0, "sim_talk_ms": 0}}


def post_all(url: str, keys: list[str], n: int, metadata: dict) -> None:
    local = threading.local()

    def one(i: int) -> None:
        s = getattr(local, "s", None)
        if s is None:
            s = local.s = requests.Session()
        body = {"scenario": "appointment_reminder", "phone": f"+346{random.randrange(10**7):07d}{random.randrange(4)}",
                "metadata": metadata}
        r = s.post(url + "/v1/calls", json=body, timeout=30,
                   headers={"Authorization": f"Bearer {keys[i % len(keys)]}", "Idempotency-Key": str(uuid.uuid4())})
        r.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(n)))


def measure(infra: Infra, ndialers: int, calls: int, profile: str) -> dict:
    base = harness.make_base_dir(f"outdial-bench-scale-{profile}-{ndialers}-")
    system = System(infra, f"bench{ndialers}", base, partitions=PARTITIONS)
    try:
        system.setup(start=("ingress", "scheduler", "outcome"))
        keys = [system.new_project(pacing=1_000_000, calls_per_min=100_000_000,
                                   requests_per_hour=100_000_000).key for _ in range(PROJECTS)]
        post_all(system.url, keys, calls, PROFILES[profile])
        wait_until(lambda: system.scalar("select count(*) from calls where dispatched_at is null") == "0",
                   300, 0.5, what="every call dispatched")
        for i in range(2, ndialers + 1):
            system.add_service(f"dialer{i}", "outdial-dialer", start=False)
        system.start_services([n for n in system.services if n.startswith("dialer")])
        wait_until(lambda: system.scalar("select count(*) from calls where final_state is null") == "0",
                   900, 0.5, what="every call final")
        dials = [parse_ts(d[0]).timestamp() for d in system.dials()]
        last_end = float(system.scalar("select extract(epoch from max(ended_at)) from calls"))
        states = dict(system.rows("select final_state, count(*) from calls group by 1"))
        span = last_end - min(dials)
        return {"profile": profile, "dialers": ndialers, "calls": calls, "dials": len(dials),
                "seconds": round(span, 1), "calls_per_s": round(calls / span, 1), "final_states": states}
    finally:
        system.teardown()


def main() -> None:
    args = sys.argv[1:]
    calls = int(args.pop(0)) if args and args[0].isdigit() else 3000
    profiles = args or ["talk", "zero"]
    infra = Infra().start()
    try:
        results = []
        for profile in profiles:
            for n in DIALERS:
                r = measure(infra, n, calls, profile)
                results.append(r)
                print(json.dumps(r), flush=True)
        print("\nprofile  dialers  calls/s  ratio to 1 dialer")
        for profile in profiles:
            one = next(r for r in results if r["profile"] == profile and r["dialers"] == 1)["calls_per_s"]
            for r in (r for r in results if r["profile"] == profile):
                print(f"{profile:7}  {r['dialers']:7}  {r['calls_per_s']:7.1f}  {r['calls_per_s'] / one:.2f}")
    finally:
        infra.close()


if __name__ == "__main__":
    main()
