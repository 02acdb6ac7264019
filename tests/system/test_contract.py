"""The HTTP contract, proven by tools that no one here wrote (issue 18).

- schemathesis (PyPI) runs `--checks all` against the document the running
  ingress serves (`/v1/openapi.yaml`), with a fixed seed and a bounded number
  of examples, all its phases (examples, coverage, fuzzing, stateful), and
  must find 0 failures: every response matches its documented schema, status
  and headers; every request the schema allows is accepted; every request it
  forbids is refused; no 5xx.
- openapi-python-client (PyPI) generates a typed client from that same served
  document into a temporary folder (never committed); a program that imports
  it places a call, uploads a CSV batch and reads the batch's results.csv.

(The signatures of real webhook deliveries are verified by the reference
`standardwebhooks` package in test_webhooks.py, helpers_webhooks.Hit.valid_for.)

Both tools come from PyPI into folders of their own under the cache
(deploy/local/deps.sh: <cache>/python-schemathesis, <cache>/python-openapi-client),
and run in subprocesses with that folder on PYTHONPATH, so their dependencies
never shadow the ones the other tests import.

What schemathesis is told about the project, as its documentation asks
("supply the identifiers"): the scenario, the verified caller ID, possible
phone numbers, and a webhook receiver URL. These are values that exist only
in this project's data (a scenario IDN, a caller ID, libphonenumber's idea of
a possible number, a host that resolves), which no JSON Schema can express.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests

from harness import REPO, wait_until
from helpers_batches import phones
from helpers_pipeline import NO_LIMITS
from helpers_webhooks import Receiver

SYSTEM_ENV = {"OUTDIAL_WEBHOOK_ALLOW_PRIVATE": "1"}  # the webhooks schemathesis creates point at 127.0.0.1
TEST_TIMEOUT = 400

CACHE = Path(os.environ.get("OUTDIAL_CACHE")
             or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "outdial")
SCHEMATHESIS_DIR = CACHE / "python-schemathesis"
CLIENT_GEN_DIR = CACHE / "python-openapi-client"

# Bounded so the whole file stays within ~4 minutes on 2 cores; the seed makes
# each run draw the same cases (the system's data differs: ids, times).
SEED = 18
MAX_EXAMPLES = 12
# GET /v1/events never ends: schemathesis reads an event stream for its
# request timeout. Short, so that the fuzzing phase is not 10 s per stream.
STREAM_TIMEOUT_S = 1.5
PACING = 600  # the project's calls per minute
POSSIBLE_PHONES = ["+34612345670", "+34612345671", "+34612345672", "+34612345674", "+34612345675"]


def _tool(folder: Path, what: str) -> dict[str, str]:
    """The environment that runs a PyPI tool installed by deps.sh into `folder`."""
    if not folder.is_dir():
        pytest.fail(f"{what} is not installed in {folder}: run deploy/local/deps.sh")
    env = dict(os.environ)
    env["PYTHONPATH"] = str(folder)
    env.pop("PYTHONSAFEPATH", None)
    return env


CONFIG = textwrap.dedent(f"""\
    [[operations]]
    include-path = "/v1/events"
    request-timeout = {STREAM_TIMEOUT_S}
    """)


def contract_data(url: str, key: str, project, receiver_url: str, pacing: int) -> dict:
    """What contract_hooks.py supplies to the requests schemathesis means to be valid."""
    return {"url": url, "key": key, "scenario": project.scenario, "caller_id": project.caller_id, "phones": POSSIBLE_PHONES,
            "webhook_url": receiver_url, "pacing": pacing}


def run_schemathesis(url: str, key: str, data: dict, workdir: Path, *, seed: int = SEED,
                     max_examples: int = MAX_EXAMPLES, timeout: float = 330) -> tuple[int, str]:
    """`schemathesis run <url>/v1/openapi.yaml --checks all` with `key`; (exit code, output)."""
    cfg = workdir / "schemathesis.toml"
    cfg.write_text(CONFIG)
    cmd = [sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
           "--config-file", str(cfg), "run", f"{url}/v1/openapi.yaml",
           "-H", f"Authorization: Bearer {key}", "--checks", "all", "--seed", str(seed),
           "--max-examples", str(max_examples), "--no-color", "--workers", "1"]
    env = _tool(SCHEMATHESIS_DIR, "schemathesis")
    env["PYTHONPATH"] += os.pathsep + str(Path(__file__).resolve().parent)
    env["SCHEMATHESIS_HOOKS"] = "contract_hooks"
    env["OUTDIAL_CONTRACT_DATA"] = json.dumps(data)
    cp = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    return cp.returncode, cp.stdout + cp.stderr


def summary(output: str) -> str:
    """schemathesis's closing summary (from its SUMMARY banner on)."""
    at = output.find("SUMMARY")
    return output[output.rfind("\n", 0, at) + 1:] if at >= 0 else output[-3000:]


# ------------------------------------------------------------------ schemathesis


def test_405_names_the_methods_the_path_takes(system):
    """Regression (issue 18, schemathesis ST204): a 405 carries `Allow` (RFC 9110 §15.5.6)."""
    r = requests.request("TRACE", f"{system.url}/healthz", timeout=10)
    assert r.status_code == 405 and r.headers.get("allow") == "GET", (r.status_code, r.headers)
    r = requests.put(f"{system.url}/v1/calls", timeout=10)
    assert r.status_code == 405
    assert sorted(m.strip() for m in r.headers["allow"].split(",")) == ["GET", "POST"]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "method_not_allowed"


def test_schemathesis_finds_no_failure(system, new_project, tmp_path):
    project = new_project(pacing=PACING, **NO_LIMITS)
    # a key of its own: the stateful phase follows GET /v1/api-keys to DELETE /v1/api-keys/{id}
    r = project.admin.post("/v1/api-keys", json={"name": "schemathesis", "scopes": ["admin"]})
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    # calls it places go through the pipeline meanwhile, so GET /v1/events has events to check
    for p in phones([0, 4, 9]):
        assert project.api.create_call(p).status_code == 202
    with Receiver() as rcv:
        t0 = time.monotonic()
        rc, out = run_schemathesis(system.url, key, contract_data(system.url, key, project, rcv.url("/hook"), PACING),
                                   tmp_path)
        took = time.monotonic() - t0
    print(summary(out))
    print(f"schemathesis took {took:.0f} s")
    assert "SUMMARY" in out, out[-4000:]
    closing = out.rstrip().splitlines()[-1]  # "=== 2 warnings in 44.19s ===", "=== 3 failures, 1 error ... ==="
    assert rc == 0 and not re.search(r"failure|error", closing), \
        f"schemathesis found failures (exit {rc}):\n{out[-20000:]}"
    # and the system still answers: nothing it sent hurt it (its stateful phase may have
    # revoked every key of the project, the admin's too: another project's key is used)
    assert system.ingress.running
    assert new_project().api.get("/v1/calls").status_code == 200


# ------------------------------------------------------------ generated client

CLIENT_PROGRAM = r'''
import json, sys, time
from outdial_api_client import AuthenticatedClient
from outdial_api_client.api.calls import create_call, get_call
from outdial_api_client.api.batches import create_batch, get_batch, get_batch_results
from outdial_api_client.models import Call, CallRequest, CreateBatchFilesBody
from outdial_api_client.types import File

url, key, scenario, phone, csv_text = sys.argv[1:6]
client = AuthenticatedClient(base_url=url, token=key, raise_on_unexpected_status=True)
out = {}

r = create_call.sync_detailed(client=client, body=CallRequest(scenario=scenario, phone=phone),
                              idempotency_key="generated-client-1")
assert r.status_code == 202 and isinstance(r.parsed, Call), (r.status_code, r.content)
out["call_id"] = str(r.parsed.id)
out["call_status"] = r.parsed.status.value
for _ in range(200):
    call = get_call.sync(id=r.parsed.id, client=client)
    if call.final_state:
        break
    time.sleep(0.1)
out["call_final_state"] = call.final_state.value if call.final_state else None
out["call_events"] = [e.status.value for e in call.events]

import io
files = CreateBatchFilesBody(file=File(payload=io.BytesIO(csv_text.encode()), file_name="contacts.csv",
                                       mime_type="text/csv"))
r = create_batch.sync_detailed(client=client, body=files, scenario=scenario, pacing_per_min=600)
assert r.status_code == 201 and type(r.parsed).__name__ == "CreateBatchResponse201", (r.status_code, r.content)
bid = r.parsed.id
out["batch_id"] = str(bid)
for _ in range(300):
    b = get_batch.sync(id=bid, client=client)
    if b.finished_at:
        break
    time.sleep(0.1)
out["batch_status"] = b.status.value
out["batch_rows"] = [b.total_rows, b.accepted_rows, b.rejected_rows]
r = get_batch_results.sync_detailed(id=bid, client=client)
assert r.status_code == 200, (r.status_code, r.content)
out["results_csv"] = r.content.decode()
print(json.dumps(out))
'''


def test_a_client_generated_from_the_served_document_works(system, new_project, tmp_path):
    project = new_project(**NO_LIMITS)
    doc = requests.get(f"{system.url}/v1/openapi.yaml", timeout=10)
    assert doc.status_code == 200
    (tmp_path / "openapi.yaml").write_bytes(doc.content)
    env = _tool(CLIENT_GEN_DIR, "openapi-python-client")
    gen = subprocess.run([sys.executable, "-c", "from openapi_python_client.cli import app; app()",
                          "generate", "--path", "openapi.yaml", "--meta", "none", "--output-path", "client"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stdout + gen.stderr
    # it reads the whole document: no schema it had to leave out (warnings name only
    # what it does not support at all: text/csv request bodies, a YAML response)
    assert "duplicate key" not in gen.stdout + gen.stderr
    assert "Cannot parse" not in re.sub(r"Cannot parse response .*?\(Unsupported content_type application/yaml\)",
                                        "", gen.stdout + gen.stderr, flags=re.S), gen.stdout
    pkg = tmp_path / "client"
    assert (pkg / "api" / "calls" / "create_call.py").is_file(), sorted(p.name for p in pkg.iterdir())
    # the package is `client` under tmp_path: import it as outdial_api_client
    (tmp_path / "pkg").mkdir()
    (pkg).rename(tmp_path / "pkg" / "outdial_api_client")
    env["PYTHONPATH"] = f"{tmp_path / 'pkg'}:{CLIENT_GEN_DIR}"
    call_phone, *rows = phones([0, 0, 4, 5])
    csv_text = "phone,name\r\n" + "".join(f"{p},row{i}\r\n" for i, p in enumerate(rows)) + "not-a-phone,bad\r\n"
    run = subprocess.run([sys.executable, "-c", CLIENT_PROGRAM, system.url, project.key, project.scenario,
                          call_phone, csv_text], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["call_status"] == "queued"
    assert out["call_final_state"] == "completed", out
    assert out["call_events"][0] == "queued" and out["call_events"][-1] == "completed", out
    assert out["batch_status"] == "completed", out
    assert out["batch_rows"] == [4, 3, 1], out
    lines = out["results_csv"].splitlines()
    assert lines[0].startswith("phone,name,call_id,status,final_state"), lines[0]
    by_phone = {ln.split(",")[0]: ln for ln in lines[1:]}
    for p, final in zip(rows, ["completed", "no_answer", "busy"]):
        assert f",{final}," in by_phone[p], by_phone[p]
    assert "invalid_phone" in by_phone["not-a-phone"]
    # what the generated client did is what the API holds
    assert project.api.call(out["call_id"])["final_state"] == "completed"
