"""`outdialctl batch upload` and `outdialctl batch watch` (docs/batches.md, last
section) against a running system: the multipart upload, the batch object on
stdout, the problem's code on stderr, the progress lines, and watch running a
batch to completion.

The tests without the `system` fixture (missing file, missing key, no server)
need no service at all: they check that the CLI fails before any request.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from harness import BIN_DIR, HarnessError, free_port
from helpers_pipeline import NO_LIMITS, SCENARIO, idem_key, phone

WATCH_TIMEOUT = 120
FINAL_COUNTS = ("completed", "failed", "canceled")
COUNT_NAMES = ("queued", "dialing", "connected", "completed", "failed", "canceled")


def ctl_batch(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """Runs `outdialctl batch ARGS` with `env`; never raises on a non-zero exit.
    Output is decoded leniently: a server's broken answer may reach stderr raw."""
    cmd = [str(BIN_DIR / "outdialctl"), "batch", *map(str, args)]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, errors="replace", timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"timed out after {timeout}s: {' '.join(cmd)}\nstderr: {e.stderr!r}") from None


def api_env(system, key: str | None, **over: str) -> dict:
    env = system.env(OUTDIAL_URL=system.url, **over)
    env.pop("OUTDIAL_API_KEY", None)
    if key is not None:
        env["OUTDIAL_API_KEY"] = key
    return env


def offline_env(key: str | None = "odk_not_a_real_key") -> dict:
    """An environment whose OUTDIAL_URL points at a port nobody listens on."""
    env = dict(os.environ)
    env["OUTDIAL_URL"] = f"http://127.0.0.1:{free_port()}"
    env.pop("OUTDIAL_API_KEY", None)
    if key is not None:
        env["OUTDIAL_API_KEY"] = key
    return env


def write_csv(path: Path, rows: list[str], header: str = "phone,name") -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def spaced(e164: str) -> str:
    """+346xxxxxxxx as people type it: '+34 6xx-xxx xxx'."""
    return f"{e164[:3]} {e164[3:6]}-{e164[6:9]} {e164[9:]}"


def stdout_json(cp) -> dict:
    try:
        return json.loads(cp.stdout)
    except ValueError:
        raise AssertionError(f"stdout is not JSON (exit {cp.returncode}): {cp.stdout[:500]!r}\n"
                             f"stderr: {cp.stderr[-2000:]}") from None


def upload_ok(env: dict, csv: Path, *args: str) -> dict:
    cp = ctl_batch(env, "upload", csv, "--scenario", SCENARIO, *args)
    assert cp.returncode == 0, f"exit {cp.returncode}\nstdout: {cp.stdout[:1000]}\nstderr: {cp.stderr[-2000:]}"
    return stdout_json(cp)


def watch_line(b: dict) -> str:
    """The line `watch` ends with, from the final batch object."""
    c = b["counts"]
    done, acc = sum(c[k] for k in FINAL_COUNTS), b["accepted_rows"]
    pct = done * 100 // acc if acc else 100
    fill = done * 20 // acc if acc else 20
    return (f"{b['status']} [{'#' * fill}{'-' * (20 - fill)}] {pct:3d}%  {done}/{acc}  "
            + " ".join(f"{k} {c[k]}" for k in COUNT_NAMES))


# ------------------------------------------------------ upload, then watch


def test_upload_then_watch_to_completion(system, tmp_path):
    p = system.new_project(pacing=600, **NO_LIMITS)
    env = api_env(system, p.key)
    good = [phone(0), phone(1), phone(4), phone(5)]
    csv = write_csv(tmp_path / "contacts.csv", [
        f"{good[0]},Ana",
        f'{spaced(good[1])},"Ruiz, Luis"',   # separators in the phone, a quoted comma
        "not-a-phone,Bad",                    # row 3: invalid_phone
        f"{good[2]},Eva",
        f"{good[3]},Olga",
    ])

    cp = ctl_batch(env, "upload", csv, "--scenario", SCENARIO, "--pacing", "600")
    assert cp.returncode == 0, cp.stderr
    b = stdout_json(cp)
    uuid.UUID(b["id"])
    assert b["scenario"] == SCENARIO and b["pacing_per_min"] == 600, b
    assert b["file_name"] == "contacts.csv", b
    assert b["columns"] == ["phone", "name"], b
    assert (b["total_rows"], b["accepted_rows"], b["rejected_rows"]) == (5, 4, 1), b
    assert b["row_errors"] == [{"row": 3, "code": "invalid_phone"}], b
    assert b["status"] in ("scheduled", "running", "completed"), b
    assert sum(b["counts"].values()) == 4, b
    # stderr is not a terminal: one final progress line, no redraws; then the
    # validation (a "validating" line if the first poll saw it), then its result
    assert "\r" not in cp.stderr, repr(cp.stderr)
    lines = cp.stderr.splitlines()
    assert lines[0].startswith("uploading contacts.csv [####################] 100%  "), lines
    assert lines[-1].startswith("validated: 4 of 5 rows accepted, "), lines
    assert lines[1:-1] in ([], ["validating 5 rows"]), lines

    # the API sees the same batch
    r = p.api.get(f"/v1/batches/{b['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["total_rows"] == 5

    cp = ctl_batch(env, "watch", b["id"], "--interval-ms", "200", timeout=WATCH_TIMEOUT)
    assert cp.returncode == 0, f"exit {cp.returncode}\nstderr: {cp.stderr[-2000:]}"
    f = stdout_json(cp)
    assert f["id"] == b["id"] and f["status"] == "completed", f
    c = f["counts"]
    assert sum(c.values()) == f["accepted_rows"] == 4, f
    assert (c["completed"], c["failed"], c["canceled"]) == (2, 2, 0), f  # digits 0, 1 | 4, 5
    assert c["queued"] == c["dialing"] == c["connected"] == 0, f
    fs = f["final_states"]
    assert (fs["completed"], fs["no_answer"], fs["busy"]) == (2, 1, 1), f
    assert f["finished_at"] is not None, f
    assert "\r" not in cp.stderr, repr(cp.stderr)
    assert cp.stderr.splitlines()[-1] == watch_line(f), cp.stderr

    # watching a finished batch: at once, the same object
    cp = ctl_batch(env, "watch", b["id"], timeout=30)
    assert cp.returncode == 0, cp.stderr
    assert stdout_json(cp)["status"] == "completed"


def test_upload_without_waiting_prints_the_answer(system, tmp_path):
    """--wait no: the 201's batch, still validating, and nothing after the upload line."""
    p = system.new_project(pacing=600, **NO_LIMITS)
    env = api_env(system, p.key)
    csv = write_csv(tmp_path / "contacts.csv", [f"{phone(0)},x", f"{phone(1)},y"])
    cp = ctl_batch(env, "upload", csv, "--scenario", SCENARIO, "--pacing", "600", "--wait", "no")
    assert cp.returncode == 0, cp.stderr
    b = stdout_json(cp)
    assert b["status"] == "validating" and b["total_rows"] == 2 and b["accepted_rows"] == 0, b
    assert len(cp.stderr.splitlines()) == 1, cp.stderr
    cp = ctl_batch(env, "upload", csv, "--scenario", SCENARIO, "--wait", "maybe")
    assert cp.returncode == 2 and "--wait takes yes or no" in cp.stderr, cp.stderr


def test_upload_with_idempotency_key_twice_is_one_batch(system, tmp_path):
    p = system.new_project(pacing=600, **NO_LIMITS)
    env = api_env(system, p.key)
    csv = write_csv(tmp_path / "once.csv", [f"{phone(0)},Ana", f"{phone(4)},Luis"])
    k = idem_key()
    first = upload_ok(env, csv, "--pacing", "600", "--idempotency-key", k)
    again = upload_ok(env, csv, "--pacing", "600", "--idempotency-key", k)
    assert again["id"] == first["id"], (first, again)
    assert again["total_rows"] == first["total_rows"] == 2

    r = p.api.get("/v1/batches")
    assert r.status_code == 200, r.text
    assert [x["id"] for x in r.json()["data"]] == [first["id"]], r.json()

    # the same key with a different request: the problem's code on stderr, exit 1
    cp = ctl_batch(env, "upload", csv, "--scenario", SCENARIO, "--pacing", "300", "--idempotency-key", k)
    assert cp.returncode == 1, cp.stderr
    assert "idempotency_key_reused" in cp.stderr, cp.stderr
    assert cp.stdout == ""


# ------------------------------------------------------- errors from the API


def test_unknown_scenario_exits_1_with_code(system, tmp_path):
    p = system.new_project(pacing=600, **NO_LIMITS)
    csv = write_csv(tmp_path / "c.csv", [f"{phone(0)},Ana"])
    cp = ctl_batch(api_env(system, p.key), "upload", csv, "--scenario", "no_such_scenario")
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stdout == ""
    assert "outdialctl: 422 unknown_scenario: " in cp.stderr, cp.stderr


def test_file_level_error_exits_1_with_code(system, tmp_path):
    p = system.new_project(pacing=600, **NO_LIMITS)
    csv = write_csv(tmp_path / "nophone.csv", ["Ana,Madrid"], header="name,city")
    cp = ctl_batch(api_env(system, p.key), "upload", csv, "--scenario", SCENARIO)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "outdialctl: 422 csv_no_phone_column: " in cp.stderr, cp.stderr


def test_bad_api_key_exits_1(system, tmp_path):
    csv = write_csv(tmp_path / "c.csv", [f"{phone(0)},Ana"])
    cp = ctl_batch(api_env(system, "odk_" + "x" * 40), "upload", csv, "--scenario", SCENARIO)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "outdialctl: 401 " in cp.stderr, cp.stderr


def test_watch_unknown_batch_exits_1(system):
    p = system.new_project(pacing=600, **NO_LIMITS)
    cp = ctl_batch(api_env(system, p.key), "watch", str(uuid.uuid4()), "--interval-ms", "200", timeout=30)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stdout == ""
    assert "outdialctl: 404 not_found" in cp.stderr, cp.stderr


# ---------------------------------------- errors before any request (no server)


def test_missing_file_exits_1_before_any_request(tmp_path):
    missing = tmp_path / "nope.csv"
    cp = ctl_batch(offline_env(), "upload", missing, "--scenario", SCENARIO)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stdout == ""
    assert f"outdialctl: cannot read {missing}: No such file or directory" in cp.stderr, cp.stderr
    assert "POST" not in cp.stderr, cp.stderr  # no request was tried

    cp = ctl_batch(offline_env(), "upload", tmp_path, "--scenario", SCENARIO)  # a folder
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "not a regular file" in cp.stderr, cp.stderr


def test_missing_api_key_exits_1(tmp_path):
    csv = write_csv(tmp_path / "c.csv", ["+34612345670,Ana"])
    for key in (None, ""):
        cp = ctl_batch(offline_env(key), "upload", csv, "--scenario", SCENARIO)
        assert cp.returncode == 1, (cp.stdout, cp.stderr)
        assert cp.stdout == ""
        assert "OUTDIAL_API_KEY is not set" in cp.stderr, cp.stderr
        cp = ctl_batch(offline_env(key), "watch", str(uuid.uuid4()))
        assert cp.returncode == 1, (cp.stdout, cp.stderr)
        assert "OUTDIAL_API_KEY is not set" in cp.stderr, cp.stderr


def test_upload_unreachable_server_exits_1(tmp_path):
    csv = write_csv(tmp_path / "c.csv", ["+34612345670,Ana"])
    env = offline_env()
    cp = ctl_batch(env, "upload", csv, "--scenario", SCENARIO)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert cp.stdout == ""
    assert f"outdialctl: POST {env['OUTDIAL_URL']}/v1/batches: " in cp.stderr, cp.stderr


def test_usage_errors_exit_2(tmp_path):
    csv = write_csv(tmp_path / "c.csv", ["+34612345670,Ana"])
    env = offline_env()
    for args in (["upload", csv],                                    # no --scenario
                 ["upload", csv, "--scenario", SCENARIO, "--pacing", "fast"],
                 ["upload", csv, "--scenario", SCENARIO, "--bogus", "1"],
                 ["watch", "x", "--interval-ms", "0"],
                 ["upload"], ["watch"]):
        cp = ctl_batch(env, *args)
        assert cp.returncode == 2, (args, cp.stdout, cp.stderr)
        assert cp.stderr.startswith(("outdialctl: ", "usage: outdialctl")), (args, cp.stderr)
