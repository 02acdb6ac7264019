"""SIP trunks per project and caller ID (OUTDIAL_SIP_TRUNKS_FILE, docs/sip.md
"Trunks") against two sipp carriers on two loopback ports:

  carrier A (PORT_A): the default trunk (OUTDIAL_SIP_*, credentials USER_A)
                      and trunk "c" (same address, its own account USER_C,
                      password from an environment variable), chosen by
                      caller ID X
  carrier B (PORT_B): trunk "b" (credentials USER_B, password from a file,
                      one call at a time), chosen by project PB

The trunks file names projects, so the dialer starts once they exist (the
`world` fixture), not with the other services.
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import BIN_DIR, free_port, run
from helpers_pipeline import NO_LIMITS, assert_accepted, phone, wait_all_final
from helpers_sipp import Carrier, details, dialer_env

PORT_A, PORT_B = free_port(), free_port()
DIALER_SIP_PORT = free_port()
USER_A, PASS_A = "trunk-a-user", "pw-A-default-7f3e"
USER_B, PASS_B = "trunk-b-user", "pw-B-file-91c4"
USER_C, PASS_C = "trunk-c-user", "pw-C-env-5d20"
PASSWORDS = (PASS_A, PASS_B, PASS_C)

SYSTEM_SERVICES = ("ingress", "scheduler", "outcome")
SYSTEM_ENV = dialer_env(PORT_A, DIALER_SIP_PORT, OUTDIAL_SIP_USERNAME=USER_A, OUTDIAL_SIP_PASSWORD=PASS_A,
                        OUTDIAL_TEST_TRUNK_C_PASSWORD=PASS_C)


@pytest.fixture(scope="module")
def world(system):
    pa = system.new_project(pacing=600, **NO_LIMITS)
    pb = system.new_project(pacing=600, **NO_LIMITS)
    x = f"+1415555{random.randint(1000, 9999)}"
    while x == pb.caller_id:
        x = f"+1415555{random.randint(1000, 9999)}"
    system.ctl("caller-id", "add", pb.id, x, json_out=False)   # pb's second verified caller ID
    secret = system.base_dir / "trunk-b.password"
    secret.write_text(PASS_B + "\n")
    trunks = system.base_dir / "trunks.json"
    trunks.write_text(json.dumps({"trunks": [
        {"name": "b", "address": f"127.0.0.1:{PORT_B}", "transport": "udp", "username": USER_B,
         "password_file": str(secret), "cps": 100, "max_concurrent": 1, "projects": [pb.id]},
        {"name": "c", "address": f"127.0.0.1:{PORT_A}", "username": USER_C,
         "password_env": "OUTDIAL_TEST_TRUNK_C_PASSWORD", "cps": 50, "caller_ids": [x]},
    ]}, indent=2))
    dialer = system.add_service("dialer", OUTDIAL_SIP_TRUNKS_FILE=str(trunks))
    return SimpleNamespace(pa=pa, pb=pb, x=x, dialer=dialer, trunks=trunks)


def creds(folder: Path, user: str, password: str) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "creds.csv").write_text(f"SEQUENTIAL\n{user};{password};\n")
    return str(folder / "creds.csv")


def place(project, **body) -> str:
    return assert_accepted(project.api.create_call(phone(0), **body))["id"]


def final_call(system, project, call_id, timeout=40) -> dict:
    wait_all_final(system, [call_id], timeout=timeout)
    return project.api.get(f"/v1/calls/{call_id}").json()


def test_each_trunk_is_logged_at_start_without_its_password(world):
    lines = [ln.get("msg", "") for ln in world.dialer.log_lines()]
    trunks = [m for m in lines if m.startswith("sip: trunk ")]
    assert len(trunks) == 3, lines
    b = next(m for m in trunks if m.startswith("sip: trunk b "))
    assert f"127.0.0.1:{PORT_B}" in b and "at most 1 at once" in b and "1 projects and 0 caller IDs" in b, b
    assert any(m.startswith("sip: trunk default ") for m in trunks), trunks
    log = world.dialer.log_path.read_text()
    assert not any(p in log for p in PASSWORDS), "a password is in the dialer's log"


def test_a_projects_calls_go_to_its_trunk_with_its_credentials(system, world, tmp_path):
    """Project PB → trunk b → carrier B, answering B's digest challenge with
    the password read from trunk b's password_file; carrier A sees nothing."""
    a = Carrier(tmp_path / "a", "answer_we_bye", port=PORT_A)
    b = Carrier(tmp_path / "b", "auth", "-inf", creds(tmp_path / "b", USER_B, PASS_B), port=PORT_B)
    call = final_call(system, world.pb, place(world.pb))
    assert b.wait() == 0, b.errors()               # a wrong answer would have been refused (403)
    a.stop()
    assert call["final_state"] == "completed", details(call)
    assert "INVITE sip:" not in a.messages(), a.messages()[-2000:]


def test_a_caller_id_selector_beats_the_project_selector(system, world, tmp_path):
    """PB's call with caller ID X: trunk c (caller ID) wins over trunk b
    (project), so it reaches carrier A with trunk c's account, not the default's."""
    a = Carrier(tmp_path / "a", "auth", "-inf", creds(tmp_path / "a", USER_C, PASS_C), port=PORT_A)
    b = Carrier(tmp_path / "b", "answer_we_bye", port=PORT_B)
    call = final_call(system, world.pb, place(world.pb, caller_id=world.x))
    assert a.wait() == 0, a.errors()
    b.stop()
    assert call["final_state"] == "completed", details(call)
    assert call["caller_id"] == world.x, call
    assert "INVITE sip:" not in b.messages(), b.messages()[-2000:]
    assert f"P-Asserted-Identity: <sip:{world.x}@127.0.0.1:{PORT_A}>" in a.messages(), a.messages()[-2000:]


def test_a_call_no_trunk_selects_takes_the_default_trunk(system, world, tmp_path):
    a = Carrier(tmp_path / "a", "auth", "-inf", creds(tmp_path / "a", USER_A, PASS_A), port=PORT_A)
    call = final_call(system, world.pa, place(world.pa))
    assert a.wait() == 0, a.errors()
    assert call["final_state"] == "completed", details(call)


def test_a_trunks_concurrency_holds_the_second_call(system, world, tmp_path):
    """Trunk b takes one call at a time: the second INVITE reaches B only
    after the first call's BYE (at OUTDIAL_SIP_MAX_TALK_S)."""
    b = Carrier(tmp_path / "b", "answer_we_bye", port=PORT_B, calls=2)
    ids = [place(world.pb), place(world.pb)]
    finals = wait_all_final(system, ids, timeout=40)
    assert b.wait() == 0, b.errors()
    assert all(f["final_state"] == "completed" for f in finals.values()), finals
    msgs = b.messages()
    invites = [m.start() for m in re.finditer(r"^INVITE sip:", msgs, re.M)]
    byes = [m.start() for m in re.finditer(r"^BYE sip:", msgs, re.M)]
    assert len(invites) == 2 and byes, msgs[-3000:]
    assert invites[1] > byes[0], "the second call was sent while the first held trunk b's only slot"


def test_a_bye_from_another_trunk_does_not_end_the_call(system, world, tmp_path):
    """A call up on trunk b gets a BYE from carrier A's address (a configured
    trunk, but not the call's): 481, and the call goes on until we hang up."""
    b = Carrier(tmp_path / "b", "answer_we_bye", port=PORT_B)
    cid = place(world.pb)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and world.pb.api.get(f"/v1/calls/{cid}").json()["status"] != "connected":
        time.sleep(0.05)
    m = re.search(r"^Call-ID: *(\S+)", b.messages(), re.M | re.I)
    assert m, b.errors()
    bye = (f"BYE sip:outdial@127.0.0.1:{DIALER_SIP_PORT} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP 127.0.0.1:{PORT_A};branch=z9hG4bKforged1\r\n"
           f"From: <sip:callee@127.0.0.1>;tag=forged\r\nTo: <sip:x@127.0.0.1>;tag=t\r\n"
           f"Call-ID: {m.group(1)}\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", PORT_A))
        s.settimeout(3)
        s.sendto(bye.encode(), ("127.0.0.1", DIALER_SIP_PORT))
        answer = s.recv(65535)
    assert answer.startswith(b"SIP/2.0 481"), answer[:200]
    call = final_call(system, world.pb, cid)
    assert b.wait() == 0, b.errors()
    assert call["final_state"] == "completed", details(call)
    assert "by us" in call["events"][-1]["detail"], details(call)


BASE = {"name": "b", "address": "127.0.0.1:5071", "username": "u", "password_env": "OUTDIAL_TEST_TRUNK_C_PASSWORD",
        "projects": ["01890000-0000-7000-8000-000000000001"]}


@pytest.mark.parametrize("trunks,expect", [
    ([{**BASE, "password": PASS_C}], 'trunk "b": unknown key "password"'),
    ([BASE, {**BASE, "projects": ["01890000-0000-7000-8000-000000000002"]}], 'trunk "b": the name is used by two trunks'),
    ([BASE, {**BASE, "name": "b2"}], 'trunk "b2": project 01890000-0000-7000-8000-000000000001 is claimed by trunk "b" too'),
    ([{**BASE, "caller_ids": ["+14155550100"]}, {**BASE, "name": "b2", "projects": [], "caller_ids": ["+14155550100"]}],
     'trunk "b2": caller ID +14155550100 is claimed by trunk "b" too'),
    ([{**BASE, "address": "carrier.example:5060"}], 'trunk "b": address "carrier.example:5060" is not an IP address'),
    ([{**BASE, "address": "127.0.0.1:99999"}], 'trunk "b": address "127.0.0.1:99999" is not an IP address'),
    ([{k: v for k, v in BASE.items() if k != "password_env"}], 'trunk "b": username "u" has no password'),
    ([{**BASE, "password_env": "OUTDIAL_TEST_NOT_SET"}], "the environment variable OUTDIAL_TEST_NOT_SET is not set"),
    ([{**BASE, "password_file": "/nonexistent/pw"}], "password_env and password_file are both given"),
    ([{**BASE, "transport": "tls"}], 'trunk "b": transport "tls" is not udp or tcp'),
    ([{**BASE, "projects": ["not-a-uuid"]}], 'trunk "b": projects[0] is not a project UUID'),
    ([{**BASE, "max_concurrent": 0}], 'trunk "b": max_concurrent must be an integer from 1'),
    ([{**BASE, "projects": []}], 'trunk "b": selects no call'),
], ids=["unknown-key", "dup-name", "dup-project", "dup-caller-id", "name-address", "bad-port", "no-password",
        "env-unset", "two-sources", "tcp", "bad-project", "bad-limit", "no-selector"])
def test_a_bad_trunks_file_stops_the_dialer(system, tmp_path, trunks, expect):
    path = tmp_path / "trunks.json"
    path.write_text(json.dumps({"trunks": trunks}))
    env = system.env(OUTDIAL_SIP_TRUNKS_FILE=str(path), OUTDIAL_HTTP_PORT=str(free_port()),
                     OUTDIAL_SIP_BIND="127.0.0.1:0")
    cp = run([str(BIN_DIR / "outdial-dialer")], env=env, timeout=20, check=False)
    out = cp.stdout + cp.stderr
    assert cp.returncode != 0, out
    errors = [json.loads(ln)["msg"] for ln in out.splitlines() if '"level":"error"' in ln]
    assert len(errors) == 1, out
    assert errors[0].startswith(f"OUTDIAL_SIP_TRUNKS_FILE {path}: ") and expect in errors[0], errors
    assert not any(p in out for p in PASSWORDS), out


def test_without_a_default_trunk_an_unselected_call_is_a_provider_error(system, world, tmp_path):
    """OUTDIAL_SIP_TRUNK empty: only the file's trunks. PA's call matches none
    and ends provider_error saying so; PB's still goes through trunk b."""
    world.dialer.env["OUTDIAL_SIP_TRUNK"] = ""
    world.dialer.restart()
    call = final_call(system, world.pa, place(world.pa))
    assert call["final_state"] == "provider_error", details(call)
    assert "no trunk" in call["events"][-1]["detail"] and "no default trunk" in call["events"][-1]["detail"], details(call)
    b = Carrier(tmp_path / "b", "auth", "-inf", creds(tmp_path / "b", USER_B, PASS_B), port=PORT_B)
    call = final_call(system, world.pb, place(world.pb))
    assert b.wait() == 0, b.errors()
    assert call["final_state"] == "completed", details(call)
