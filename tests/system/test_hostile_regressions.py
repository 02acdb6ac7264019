"""Regressions of the faults issue 18 found by attacking the API, one test each,
named after the fault. Each failed before its fix: a crash of the ingress, a
503 for bad input, a revoked key that kept its event stream.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import requests

from harness import wait_until
from helpers_pipeline import NO_LIMITS, assert_problem

CSV = b"phone,name\r\n+34600000010,Ana\r\n"
STREAMS_PER_KEY = 3
SYSTEM_ENV = {"OUTDIAL_EVENTS_MAX_STREAMS_PER_KEY": str(STREAMS_PER_KEY), "OUTDIAL_EVENTS_RESUME_WINDOW_S": "3600",
              "OUTDIAL_IMPORTS_PER_PROJECT": "1"}


@pytest.fixture(scope="module")
def proj(system):
    return system.new_project(**NO_LIMITS)


def _batches_count(system, project_id: str) -> int:
    return int(system.scalar(f"select count(*) from batches where project_id = '{project_id}'"))


def _multipart(fields: list[tuple[bytes, bytes, bytes | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body from raw (name, value, filename) parts, bytes kept as they are."""
    boundary = "b" + uuid.uuid4().hex
    out = b""
    for name, value, filename in fields:
        disp = b'form-data; name="' + name + b'"'
        if filename is not None:
            disp += b'; filename="' + filename + b'"'
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp + b"\r\n\r\n" + value + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out, f"multipart/form-data; boundary={boundary}"


def _post_batch(system, key: str, body: bytes, ctype: str, query: str = "") -> requests.Response:
    return requests.post(f"{system.url}/v1/batches{query}", data=body, timeout=30,
                         headers={"Authorization": f"Bearer {key}", "Content-Type": ctype})


@pytest.mark.parametrize("query", ["?scenario=%FF", "?scenario=appointment_reminder&file_name=%C3%28.csv",
                                   "?scenario=appointment_reminder&calling_windows=%ED%A0%80",
                                   "?scenario=%F0%9F%98"])
def test_batch_query_setting_not_utf8_killed_the_ingress(system, proj, query):
    before = _batches_count(system, proj.id)
    r = _post_batch(system, proj.key, CSV, "text/csv", query)
    p = assert_problem(r, 400, "invalid_parameter")
    assert p["errors"][0]["field"] == "query", p
    assert system.ingress.running(), "ingress died"
    assert _batches_count(system, proj.id) == before


@pytest.mark.parametrize("parts,field", [
    ([(b"scenario", b"appointment_reminder", None), (b"file", CSV, b"\xff\xfe.csv")], "file_name"),
    ([(b"scenario", b"appointment_reminder", None), (b"file", CSV, b"a\xc0\xafb.csv")], "file_name"),
    ([(b"scenario", b"\xffappointment", None), (b"file", CSV, b"c.csv")], "scenario"),
    ([(b"scenario", b"appointment_reminder\x00x", None), (b"file", CSV, b"c.csv")], "scenario"),
    ([(b"scenario", b"appointment_reminder", None), (b"start_at", b"\xe2\x82", None),
      (b"file", CSV, b"c.csv")], "start_at"),
    ([(b"scenario", b"appointment_reminder", None), (b"pacing_per_min", b"5\x00", None),
      (b"file", CSV, b"c.csv")], "pacing_per_min"),
], ids=["filename-ff", "filename-overlong", "scenario-ff", "scenario-nul", "start_at-truncated", "pacing-nul"])
def test_multipart_part_not_utf8_killed_the_ingress(system, proj, parts, field):
    before = _batches_count(system, proj.id)
    body, ctype = _multipart(parts)
    r = _post_batch(system, proj.key, body, ctype)
    p = assert_problem(r, 400, "invalid_parameter")
    assert p["errors"][0]["field"] == field, p
    assert system.ingress.running(), "ingress died"
    assert _batches_count(system, proj.id) == before


def test_multipart_unknown_part_not_utf8_is_ignored(system, proj):
    body, ctype = _multipart([(b"scenario", b"appointment_reminder", None), (b"\xffnote", b"\xff", None),
                              (b"file", CSV, "ñ.csv".encode())])
    r = _post_batch(system, proj.key, body, ctype)
    assert r.status_code == 201, r.text
    assert r.json()["file_name"] == "ñ.csv"


def test_batch_file_name_overlong(system, proj):
    r = _post_batch(system, proj.key, CSV, "text/csv", "?scenario=appointment_reminder&file_name=" + "a" * 256)
    p = assert_problem(r, 400, "invalid_parameter")
    assert p["errors"][0]["field"] == "file_name", p


@pytest.mark.parametrize("path,field", [
    ("/v1/audit-log?cursor=99999999999999999999", "cursor"),
    ("/v1/audit-log?cursor=-99999999999999999999", "cursor"),
    ("/v1/calls?since=0000-01-01T00:00:00Z", "since"),
    ("/v1/calls?until=0000-12-31T23:59:59Z", "until"),
    ("/v1/calls?since=0001-01-01T00:00:00%2B00:01", "since"),
    ("/v1/billing?from=0000-01-01T00:00:00Z", "from"),
    ("/v1/billing?to=0000-06-01T00:00:00Z", "to"),
    ("/v1/calls?phone=%FF", "query"),
    ("/v1/audit-log?action=%C0%80", "query"),
])
def test_bad_parameter_answered_503(system, proj, path, field):
    """Bad input reached PostgreSQL, whose refusal was answered 503 "the database is unavailable"."""
    r = requests.get(system.url + path, headers={"Authorization": f"Bearer {proj.admin_key}"}, timeout=10)
    p = assert_problem(r, 400, "invalid_parameter")
    assert p["errors"][0]["field"] == field, p
    assert system.ingress.running(), "ingress died"


def test_year_one_is_accepted(system, proj):
    r = requests.get(system.url + "/v1/calls?since=0001-01-01T00:00:00Z",
                     headers={"Authorization": f"Bearer {proj.admin_key}"}, timeout=10)
    assert r.status_code == 200, r.text


class _Stream:
    """GET /v1/events read on a thread; `ended` is set when the server ends it."""

    def __init__(self, url: str, key: str):
        self.lines: list[str] = []
        self.status = 0
        self.ended = threading.Event()
        self._t = threading.Thread(target=self._read, args=(url, key), daemon=True)
        self._t.start()

    def _read(self, url: str, key: str) -> None:
        try:
            with requests.get(f"{url}/v1/events", headers={"Authorization": f"Bearer {key}"},
                              stream=True, timeout=(5, 30)) as resp:
                self.status = resp.status_code
                for line in resp.iter_lines(decode_unicode=True):
                    self.lines.append(line)
        except requests.RequestException:
            pass  # ended as failed: a client would reconnect
        self.ended.set()

    def opened(self) -> bool:
        return any(ln.startswith(": open") for ln in self.lines)


def test_revoked_key_kept_its_event_stream(system, proj):
    """A stream authenticated when it opened kept streaming after its key was
    revoked; it must end within the revocation time (5 s), its reconnection
    is refused, and the streams of other keys go on."""
    key = proj.admin.post("/v1/api-keys", json={"name": "stream", "scopes": ["sessions:read"]}).json()
    revoked_stream, other = _Stream(system.url, key["key"]), _Stream(system.url, proj.key)
    wait_until(lambda: revoked_stream.opened() and other.opened(), 10, 0.05, what="both streams to open")
    time.sleep(0.5)
    assert not revoked_stream.ended.is_set(), "the stream ended before the revocation"
    r = proj.admin.delete(f"/v1/api-keys/{key['id']}")
    assert r.status_code in (200, 204), r.text
    revoked = time.monotonic()
    assert revoked_stream.ended.wait(8), "the stream of a revoked key is still open 8 s after the revocation"
    took = time.monotonic() - revoked
    assert took <= 5.5, f"the stream ended {took:.1f} s after the revocation"
    wait_until(lambda: requests.get(f"{system.url}/v1/events", timeout=5,
                                    headers={"Authorization": f"Bearer {key['key']}"}).status_code == 401,
               6, 0.2, what="the revoked key to be refused")
    assert not other.ended.is_set(), "the stream of a key that was not revoked ended too"


def test_one_key_could_open_every_stream_of_an_ingress(system, proj):
    """Event streams are capped per key (OUTDIAL_EVENTS_MAX_STREAMS_PER_KEY),
    so one tenant cannot hold the streams every other one needs."""
    key = proj.admin.post("/v1/api-keys", json={"name": "streams", "scopes": ["sessions:read"]}).json()["key"]
    streams = [_Stream(system.url, key) for _ in range(STREAMS_PER_KEY)]
    wait_until(lambda: all(s.opened() for s in streams), 10, 0.05, what="the streams to open")
    r = requests.get(f"{system.url}/v1/events", headers={"Authorization": f"Bearer {key}"}, timeout=5)
    assert_problem(r, 429, "too_many_streams")
    other = _Stream(system.url, proj.key)  # another key of the same project is not held back
    wait_until(other.opened, 10, 0.05, what="another key's stream to open")


def test_old_last_event_id_scanned_every_projects_history(system, proj):
    """A Last-Event-ID resumes only from one of the project's events within
    OUTDIAL_EVENTS_RESUME_WINDOW_S: an old, unknown or foreign one is a 410
    instead of a read of every project's history since then."""
    other = system.new_project(**NO_LIMITS)
    ids = [proj.api.create_call("+34600000010").json()["id"], other.api.create_call("+34600000010").json()["id"]]
    wait_until(lambda: int(system.scalar("select count(*) from call_events where call_id in "
                                         f"('{ids[0]}', '{ids[1]}')")) >= 2, 20, 0.1, what="the calls' events")

    def event_id(call_id: str) -> str:
        return system.scalar(f"select xid::text || '-' || id from call_events where call_id = '{call_id}' "
                             "order by id limit 1")

    key = proj.admin.post("/v1/api-keys", json={"name": "resume", "scopes": ["sessions:read"]}).json()["key"]

    def resume(last: str) -> requests.Response:
        return requests.get(f"{system.url}/v1/events", stream=True, timeout=(5, 5),
                            headers={"Authorization": f"Bearer {key}", "Last-Event-ID": last})

    mine, foreign = event_id(ids[0]), event_id(ids[1])
    with resume(mine) as r:
        assert r.status_code == 200, r.text
    for last in (foreign, "1-1", "99999999999-1"):
        with resume(last) as r:
            p = assert_problem(r, 410, "last_event_id_expired")
            assert p["errors"][0]["field"] == "Last-Event-ID", p
    system.psql(f"update call_events set at = now() - interval '2 hours' where call_id = '{ids[0]}'")
    with resume(mine) as r:
        assert_problem(r, 410, "last_event_id_expired")


def test_dnc_imports_of_one_project_ran_on_the_request_connections_without_a_cap(system):
    """DNC imports run on the ingress's heavy pool, OUTDIAL_IMPORTS_PER_PROJECT
    (here 1) of a project at once: the others are told 429 too_many_imports,
    another project's import is not held back, and nothing is half written."""
    p = system.new_project(scopes=("dnc:manage",), **NO_LIMITS)
    q = system.new_project(scopes=("dnc:manage",), **NO_LIMITS)
    n = 100_000
    bodies = ["phone\n" + "\n".join(f"+3461{k}{i:06d}" for i in range(n)) + "\n" for k in range(3)]
    answers: list[tuple[str, requests.Response]] = []

    def imp(proj, body):
        answers.append((proj.id, proj.api.post("/v1/dnc", data=body.encode(), timeout=120,
                                               headers={"Content-Type": "text/csv"})))

    threads = [threading.Thread(target=imp, args=(p, b)) for b in bodies]
    threads.append(threading.Thread(target=imp, args=(q, bodies[0])))
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    assert len(answers) == 4, answers
    for _, r in answers:
        assert r.status_code in (200, 429), r.text[:300]
        if r.status_code == 429:
            assert_problem(r, 429, "too_many_imports")
    p_ok = sum(1 for pid, r in answers if pid == p.id and r.status_code == 200)
    assert 1 <= p_ok < 3, [(pid == p.id, r.status_code) for pid, r in answers]
    assert [r.status_code for pid, r in answers if pid == q.id] == [200], "another project's import was held back"
    assert int(system.scalar(f"select count(*) from dnc where project_id = '{p.id}'")) == p_ok * n
    assert int(system.scalar(f"select count(*) from dnc where project_id = '{q.id}'")) == n


def test_a_project_could_mint_api_keys_without_end(system):
    """Active API keys per project are capped (projects.max_api_keys, set by
    `outdialctl project set --max-api-keys`): over it 422 too_many_api_keys,
    nothing stored; a revoked key frees its place."""
    p = system.new_project(**NO_LIMITS)  # an admin key and a scoped key: 2 active
    system.ctl("project", "set", p.id, "--max-api-keys", "3", json_out=False)
    third = p.admin.post("/v1/api-keys", json={"name": "k3", "scopes": ["sessions:read"]})
    assert third.status_code == 201, third.text
    before = int(system.scalar(f"select count(*) from api_keys where project_id = '{p.id}'"))
    assert_problem(p.admin.post("/v1/api-keys", json={"name": "k4", "scopes": ["sessions:read"]}), 422,
                   "too_many_api_keys")
    assert int(system.scalar(f"select count(*) from api_keys where project_id = '{p.id}'")) == before
    assert p.admin.delete(f"/v1/api-keys/{third.json()['id']}").status_code in (200, 204)
    again = p.admin.post("/v1/api-keys", json={"name": "k4", "scopes": ["sessions:read"]})
    assert again.status_code == 201, again.text


def test_metrics_on_the_public_port_named_every_project(system, proj):
    """OUTDIAL_METRICS_ADDR moves /metrics (whose labels name projects and
    batches) to a listener of its own; the public port keeps /healthz and
    /readyz and answers /metrics 404. A bad address stops the start."""
    from harness import free_port
    port = free_port()
    ing = system.add_service("ingress_private_metrics", "outdial-ingress",
                             OUTDIAL_METRICS_ADDR=f"127.0.0.1:{port}")
    try:
        assert requests.get(ing.url + "/healthz", timeout=5).status_code == 200
        assert requests.get(ing.url + "/readyz", timeout=5).status_code == 200
        assert_problem(requests.get(ing.url + "/metrics", timeout=5), 404)
        r = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        assert r.status_code == 200 and "outdial_ingress_" in r.text, r.text[:300]
        assert requests.get(system.url + "/metrics", timeout=5).status_code == 200  # unset: as before
    finally:
        ing.stop()
    bad = system.add_service("ingress_bad_metrics", "outdial-ingress", start=False,
                             OUTDIAL_METRICS_ADDR="127.0.0.1")
    import subprocess
    cp = subprocess.run([str(bad.binary)], env=bad.env, capture_output=True, text=True, timeout=20)
    assert cp.returncode != 0 and "OUTDIAL_METRICS_ADDR" in cp.stderr, (cp.returncode, cp.stderr[-500:])
