"""pytest fixtures for outdial's black-box system tests (see harness.py).

Fixtures:
  infra    (session)  real PostgreSQL + Kafka from deploy/local/infra.sh on free ports;
                      infra.psql(sql, db=...), infra.kafka_stop(hard=False),
                      infra.kafka_start(), infra.pg_restart(), infra.topics() ...
  system   (module)   fresh database + topic prefix + the four services started
                      (sim time scale 0.01, dial log in a temp dir, lease 3 s).
                      A module may set SYSTEM_ENV = {...} (extra service env) and
                      SYSTEM_SERVICES = [...] (which services to start; default all),
                      SYSTEM_PARTITIONS = N (partitions of each topic; default 4),
                      SANITIZED = True (its services and outdialctl from
                      OUTDIAL_SANITIZER_BUILD_DIR, the ASan + UBSan build, when set).
  new_project (function) system.new_project
  project  (function) a fresh project: .api (outbound:trigger + sessions:read key),
                      .admin (admin key), .id, .caller_id, .scenario

Each test is limited to OUTDIAL_TEST_TIMEOUT seconds (default 300; a module's
TEST_TIMEOUT raises it for its own tests) by SIGALRM,
so a stuck test fails instead of hanging the run.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

import harness
from harness import Infra, System


@pytest.fixture(scope="session")
def infra():
    keep_dir = os.environ.get("OUTDIAL_TEST_INFRA_DIR")
    inf = Infra(Path(keep_dir)) if keep_dir else Infra()
    try:
        inf.start()
    except Exception:
        inf.started = True  # make close() stop whatever half-started
        inf.close()
        raise
    yield inf
    inf.close()


@pytest.fixture(scope="module")
def system(infra, request):
    mod = request.module
    base = harness.make_base_dir(f"outdial-{mod.__name__.rsplit('.', 1)[-1]}-")
    sanitized = getattr(mod, "SANITIZED", False) and harness.SANITIZER_BIN_DIR is not None
    sysm = System(infra, mod.__name__, base, extra_env=dict(getattr(mod, "SYSTEM_ENV", {})),
                  partitions=getattr(mod, "SYSTEM_PARTITIONS", 4),
                  bin_dir=harness.SANITIZER_BIN_DIR if sanitized else harness.BIN_DIR)
    try:
        sysm.setup(start=getattr(mod, "SYSTEM_SERVICES", harness.SERVICES))
    except Exception:
        sysm.teardown()
        raise
    yield sysm
    sysm.teardown()


@pytest.fixture
def new_project(system):
    return system.new_project


@pytest.fixture
def project(system):
    return system.new_project()


# ----------------------------------------------------------- per-test timeout


class TestTimeout(Exception):
    pass


@pytest.fixture(autouse=True)
def _test_timeout(request):
    limit = max(int(os.environ.get("OUTDIAL_TEST_TIMEOUT", "300")),
                int(getattr(request.module, "TEST_TIMEOUT", 0)))

    def on_alarm(signum, frame):
        raise TestTimeout(f"test exceeded OUTDIAL_TEST_TIMEOUT={limit}s")

    try:
        old = signal.signal(signal.SIGALRM, on_alarm)
    except ValueError:  # not in the main thread
        yield
        return
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# --------------------------------------------- service logs on a failed test


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        sysm = getattr(item, "funcargs", {}).get("system")
        if isinstance(sysm, System):
            try:
                rep.sections.append(("outdial service logs", sysm.log_tails(30)))
            except Exception:  # noqa: BLE001
                pass
