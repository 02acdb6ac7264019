"""The `sip` provider against sipp (Debian's sip-tester) playing the carrier
on loopback: each scenario in tests/system/sipp/ is one carrier behaviour;
the dialer of this module dials through it (OUTDIAL_DIALER_PROVIDER=sip).
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

import pytest

import helpers_sipp as sipp
from helpers_sipp import details
from harness import free_port
from helpers_pipeline import NO_LIMITS, assert_accepted, phone, wait_all_final

TRUNK_PORT = free_port()
DIALER_SIP_PORT = free_port()
USER, PASSWORD = "outdial-test", "s3cret-digest"

SYSTEM_ENV = {**sipp.dialer_env(TRUNK_PORT, DIALER_SIP_PORT, OUTDIAL_SIP_USERNAME=USER, OUTDIAL_SIP_PASSWORD=PASSWORD),
              # every call here is short: who hung up decides whether it is a short hang-up
              "OUTDIAL_REPUTATION_SHORT_CALL_S": "60"}


def short_hangups(system, call_id: str) -> tuple[int, int]:
    """(answered, short hang-ups) counted for the call's project (docs/reputation.md), folded or not."""
    row = system.scalar(
        "SELECT sum(answered) || ',' || sum(short) FROM (SELECT answered, short FROM reputation_deltas "
        f"WHERE project_id = (SELECT project_id FROM calls WHERE id = '{call_id}') UNION ALL "
        "SELECT answered, short FROM reputation_buckets "
        f"WHERE project_id = (SELECT project_id FROM calls WHERE id = '{call_id}')) x")
    answered, short = row.split(",")
    return int(answered), int(short)


def Carrier(tmp_path: Path, scenario: str, *args: str, fill: dict[str, str] | None = None) -> sipp.Carrier:
    """sipp as the trunk, running one scenario for one call."""
    return sipp.Carrier(tmp_path, scenario, *args, port=TRUNK_PORT, fill=fill)


def call_through(system, tmp_path, scenario, *args, digit=0, fill=None):
    carrier = Carrier(tmp_path, scenario, *args, fill=fill)
    p = system.new_project(pacing=600, **NO_LIMITS)
    c = assert_accepted(p.api.create_call(phone(digit)))
    final = wait_all_final(system, [c["id"]], timeout=40)[c["id"]]
    call = p.api.get(f"/v1/calls/{c['id']}").json()
    rc = carrier.wait()
    return call, final, rc, carrier


def test_answered_then_the_callee_hangs_up(system, tmp_path):
    call, _, rc, carrier = call_through(system, tmp_path, "answer_callee_bye")
    assert rc == 0, carrier.errors()
    assert call["final_state"] == "completed", details(call)
    assert [e["status"] for e in call["events"]][-3:] == ["dialing", "connected", "completed"], details(call)
    assert "BYE" in call["events"][-1]["detail"] and "callee" in call["events"][-1]["detail"]
    assert call["duration_s"] is not None and call["duration_s"] >= 0
    # who hung up reaches the caller reputation: the callee's BYE within the limit is a short hang-up
    assert short_hangups(system, call["id"]) == (1, 1)


def test_answered_then_we_hang_up(system, tmp_path):
    call, _, rc, carrier = call_through(system, tmp_path, "answer_we_bye")
    assert rc == 0, carrier.errors()
    assert call["final_state"] == "completed", details(call)
    assert "by us" in call["events"][-1]["detail"], details(call)
    assert call["duration_s"] >= 2, call  # OUTDIAL_SIP_MAX_TALK_S
    assert short_hangups(system, call["id"]) == (1, 0)  # ours is never a short hang-up


@pytest.mark.parametrize("code,reason,final_state", [
    (486, "Busy Here", "busy"),
    (600, "Busy Everywhere", "busy"),
    (404, "Not Found", "invalid_number"),
    (484, "Address Incomplete", "invalid_number"),
    (403, "Forbidden", "caller_id_unauthorized"),
    (603, "Decline", "caller_id_unauthorized"),
    (480, "Temporarily Unavailable", "no_answer"),
    (503, "Service Unavailable", "provider_error"),
    (488, "Not Acceptable Here", "provider_error"),   # unknown 4xx: by class
    (699, "Whatever", "no_answer"),                   # unknown 6xx: by class
])
def test_final_answers_map_to_final_states(system, tmp_path, code, reason, final_state):
    call, _, rc, carrier = call_through(system, tmp_path, "reject", fill={"CODE": str(code), "REASON": reason})
    assert rc == 0, carrier.errors()     # the refusal was ACKed (sipp waited for it)
    assert call["final_state"] == final_state, details(call)
    assert f"SIP {code} {reason}" in call["events"][-1]["detail"], details(call)


def test_ring_timeout_cancels(system, tmp_path):
    call, _, rc, carrier = call_through(system, tmp_path, "ring_timeout")
    assert rc == 0, carrier.errors()
    assert call["final_state"] == "no_answer", details(call)
    assert "ring timeout" in call["events"][-1]["detail"] and "487" in call["events"][-1]["detail"], details(call)


def test_no_answer_at_all_is_timer_b(system, tmp_path):
    call, _, rc, carrier = call_through(system, tmp_path, "silent")
    assert rc == 0, carrier.errors()
    assert call["final_state"] == "provider_error", details(call)
    assert "Timer B" in call["events"][-1]["detail"], details(call)
    # Timer A: sent at 0, T1, 3 T1, 7 T1, ... (T1 = 50 ms) until Timer B (64 T1): 7 copies, never a CANCEL
    msgs = (tmp_path / "msgs.log").read_text()
    assert msgs.count("INVITE sip:") == 7, msgs[-3000:]
    assert "CANCEL sip:" not in msgs


def test_digest_challenge_is_answered(system, tmp_path):
    (tmp_path / "creds.csv").write_text(f"SEQUENTIAL\n{USER};{PASSWORD};\n")
    call, _, rc, carrier = call_through(system, tmp_path, "auth", "-inf", str(tmp_path / "creds.csv"))
    assert rc == 0, carrier.errors()
    assert call["final_state"] == "completed", details(call)   # a wrong answer would be 403


def test_garbage_from_the_peer_never_crashes_the_dialer(system, tmp_path):
    """Random datagrams, truncated and malformed SIP, responses to nothing and
    requests for unknown calls at the dialer's SIP port: it stays up (same
    process), answers what deserves an answer, and the next call completes."""
    dialer = system.services["dialer"]
    pid = dialer.pid
    rnd = random.Random(7)
    valid = ("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
             "To: <sip:c@d>;tag=2\r\nCall-ID: nobody\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    bye = valid.replace("SIP/2.0 200 OK", "BYE sip:outdial@127.0.0.1 SIP/2.0").replace("1 INVITE", "2 BYE")
    payloads = [os.urandom(rnd.randint(1, 1400)) for _ in range(300)]
    payloads += [valid[:i].encode() for i in range(0, len(valid), 7)]          # every truncation
    payloads += [bytes(b ^ rnd.randint(0, 255) if rnd.random() < 0.05 else b for b in valid.encode()) for _ in range(300)]
    payloads += [valid.replace("Content-Length: 0", "Content-Length: 99999").encode(),
                 valid.replace("CSeq: 1 INVITE", "CSeq: 99999999999999999999 INVITE").encode(),
                 valid.replace("SIP/2.0 200", "SIP/2.0 9999").encode(),
                 ("X" * 60000).encode(), b"\r\n\r\n", b"\x00" * 100]
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    stranger.settimeout(0.5)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # from the trunk's own address
    sock.bind(("127.0.0.1", TRUNK_PORT))
    sock.settimeout(2)
    for data in payloads:
        sock.sendto(data, ("127.0.0.1", DIALER_SIP_PORT))
        stranger.sendto(data, ("127.0.0.1", DIALER_SIP_PORT))
    stranger.sendto(bye.encode(), ("127.0.0.1", DIALER_SIP_PORT))
    with pytest.raises(socket.timeout):
        stranger.recv(65535)                                  # anyone but the trunk is not answered
    stranger.close()
    sock.sendto(bye.encode(), ("127.0.0.1", DIALER_SIP_PORT))
    answer = b""
    deadline = time.monotonic() + 5
    while b"481" not in answer and time.monotonic() < deadline:
        try:
            answer = sock.recv(65535)
        except socket.timeout:
            break
    assert answer.startswith(b"SIP/2.0 481"), answer[:200]   # a BYE for a call it does not know
    sock.close()
    call, _, rc, carrier = call_through(system, tmp_path, "answer_we_bye")
    assert rc == 0, carrier.errors()
    assert call["final_state"] == "completed", details(call)
    assert dialer.pid == pid and dialer.running(), "the dialer was restarted"


def invites(tmp_path) -> int:
    return (tmp_path / "msgs.log").read_text().count("INVITE sip:")


def test_a_200_retransmitted_after_the_ack_is_acked_again(system, tmp_path):
    call, _, rc, carrier = call_through(system, tmp_path, "ok_retransmitted")
    assert rc == 0, carrier.errors()     # sipp got the second ACK, then our BYE
    assert call["final_state"] == "completed", details(call)
    assert [e["status"] for e in call["events"]].count("connected") == 1, details(call)


def test_a_lost_first_invite_is_sent_again(system, tmp_path):
    call, _, rc, carrier = call_through(system, tmp_path, "first_invite_lost")
    assert rc == 0, carrier.errors()
    assert call["final_state"] == "completed", details(call)
    assert invites(tmp_path) >= 3, carrier.errors()   # 0, T1, 3 T1, 7 T1 (T1 = 50 ms) within the 400 ms of silence


def test_a_challenge_too_long_to_answer_fails_the_call(system, tmp_path):
    """A nonce over 2,048 characters is not cut (the answer would be wrong):
    the challenge is not answered, the call ends provider_error."""
    call, final, rc, carrier = call_through(system, tmp_path, "challenge_big_nonce", fill={"NONCE": "n" * 3000})
    assert rc == 0, carrier.errors()
    assert final["final_state"] == "provider_error", details(call)
    assert "challenge could not be answered" in details(call)
    assert invites(tmp_path) == 1, carrier.errors()


def test_a_lost_final_response_is_taken_when_sent_again(system, tmp_path):
    call, final, rc, carrier = call_through(system, tmp_path, "lost_final")
    assert rc == 0, carrier.errors()     # the ACK of the second 486 came back
    assert final["final_state"] == "busy", details(call)
    assert "SIP 486" in details(call)
    assert invites(tmp_path) == 1, carrier.errors()  # the 100 stopped our retransmissions (RFC 3261 17.1.1.2)


def test_lost_provisional_responses_make_us_send_the_invite_again(system, tmp_path):
    call, final, rc, carrier = call_through(system, tmp_path, "lost_provisional")
    assert rc == 0, carrier.errors()
    assert final["final_state"] == "completed", details(call)
    # nothing heard: the INVITE again at T1; the 180 to it stops the retransmissions (RFC 3261 17.1.1.2)
    assert invites(tmp_path) == 2, carrier.errors()


def test_a_lost_200_then_every_answer_to_our_bye_lost(system, tmp_path):
    call, final, rc, carrier = call_through(system, tmp_path, "lost_ok")
    assert rc == 0, carrier.errors()
    assert final["final_state"] == "completed", details(call)
    assert [e["status"] for e in call["events"]].count("connected") == 1, details(call)
    assert (tmp_path / "msgs.log").read_text().count("ACK sip:") == 1, carrier.errors()
    # Timer E until Timer F (64 T1 = 3.2 s): at 0, T1, then osip's 500 ms, 1 s steps (docs/sip.md)
    assert (tmp_path / "msgs.log").read_text().count("BYE sip:") >= 4, carrier.errors()
    assert "hung up by us (BYE unanswered)" in details(call)


def test_a_forked_answer_is_acked_and_hung_up(system, tmp_path):
    call, _, rc, carrier = call_through(system, tmp_path, "forked")
    assert rc == 0, carrier.errors()     # BYE for the second callee's dialog first, then ours
    assert call["final_state"] == "completed", details(call)
    assert [e["status"] for e in call["events"]].count("connected") == 1, details(call)


def test_a_dialer_killed_mid_call_never_sends_a_second_invite(system, tmp_path):
    """The call is up when the dialer is killed (-9) and started again: the
    call ends internal_error when its lease runs out, and the carrier never
    sees another INVITE for it (nor for anything else)."""
    carrier = Carrier(tmp_path, "answer_hold")
    p = system.new_project(pacing=600, **NO_LIMITS)
    c = assert_accepted(p.api.create_call(phone(0)))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and p.api.get(f"/v1/calls/{c['id']}").json()["status"] != "connected":
        time.sleep(0.1)
    assert p.api.get(f"/v1/calls/{c['id']}").json()["status"] == "connected"
    system.services["dialer"].restart(hard=True)
    final = wait_all_final(system, [c["id"]], timeout=40)[c["id"]]
    call = p.api.get(f"/v1/calls/{c['id']}").json()
    assert call["final_state"] == "internal_error", details(call)
    assert carrier.wait() == 0, carrier.errors()       # held 12 s after the answer: long past the lease
    assert invites(tmp_path) == 1, carrier.errors()
    assert final
