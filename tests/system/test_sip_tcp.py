"""SIP over TCP (docs/sip.md "TCP"): a trunk with transport tcp, sipp playing
it over TCP (`-t t1`); a UDP trunk whose INVITE grows over 1300 bytes, which
must then go over TCP (RFC 3261 18.1.1); and a trunk that answers garbage
on the connection.

  default trunk (TCP_PORT):  OUTDIAL_SIP_TRANSPORT=tcp
  trunk "big"   (UDP_PORT):  udp, with credentials, chosen by project PB
"""

from __future__ import annotations

import json
import socket
import threading
from types import SimpleNamespace

import pytest

from harness import free_port
from helpers_pipeline import NO_LIMITS, assert_accepted, phone, wait_all_final
from helpers_sipp import Carrier, details, dialer_env

TCP_PORT, UDP_PORT = free_port(), free_port()
DIALER_SIP_PORT = free_port()
USER, PASSWORD = "big-user", "pw-big-3a9d"

SYSTEM_SERVICES = ("ingress", "scheduler", "outcome")
SYSTEM_ENV = dialer_env(TCP_PORT, DIALER_SIP_PORT, OUTDIAL_SIP_TRANSPORT="tcp", OUTDIAL_TEST_BIG_PASSWORD=PASSWORD)


@pytest.fixture(scope="module")
def world(system):
    pa = system.new_project(pacing=600, **NO_LIMITS)
    pb = system.new_project(pacing=600, **NO_LIMITS)
    trunks = system.base_dir / "trunks.json"
    trunks.write_text(json.dumps({"trunks": [
        {"name": "big", "address": f"127.0.0.1:{UDP_PORT}", "transport": "udp", "username": USER,
         "password_env": "OUTDIAL_TEST_BIG_PASSWORD", "cps": 100, "projects": [pb.id]},
    ]}))
    dialer = system.add_service("dialer", OUTDIAL_SIP_TRUNKS_FILE=str(trunks))
    return SimpleNamespace(pa=pa, pb=pb, dialer=dialer)


def call(system, project) -> dict:
    cid = assert_accepted(project.api.create_call(phone(0)))["id"]
    wait_all_final(system, [cid], timeout=40)
    return project.api.get(f"/v1/calls/{cid}").json()


def test_a_tcp_trunk_gets_the_call_over_tcp(system, world, tmp_path):
    carrier = Carrier(tmp_path, "answer_callee_bye", "-t", "t1", port=TCP_PORT)
    c = call(system, world.pa)
    assert carrier.wait() == 0, carrier.errors()
    assert c["final_state"] == "completed", details(c)
    msgs = carrier.messages()
    assert "TCP message received" in msgs and "UDP message" not in msgs, msgs[-3000:]
    assert "Via: SIP/2.0/TCP 127.0.0.1:" in msgs and "Via: SIP/2.0/UDP" not in msgs, msgs[-3000:]
    assert "callee" in c["events"][-1]["detail"], details(c)   # sipp's BYE came back on our connection


def test_no_retransmission_over_tcp_then_timer_b(system, world, tmp_path):
    carrier = Carrier(tmp_path, "silent", "-t", "t1", port=TCP_PORT)
    c = call(system, world.pa)
    carrier.wait()
    assert c["final_state"] == "provider_error" and "Timer B" in details(c), details(c)
    assert carrier.messages().count("INVITE sip:") == 1, carrier.errors()  # a reliable transport: Timer A is off


def test_a_refusal_over_tcp_is_acked_over_tcp(system, world, tmp_path):
    carrier = Carrier(tmp_path, "reject", "-t", "t1", port=TCP_PORT, fill={"CODE": "486", "REASON": "Busy Here"})
    c = call(system, world.pa)
    assert carrier.wait() == 0, carrier.errors()   # the ACK of the 486 came on the connection
    assert c["final_state"] == "busy" and "SIP 486" in details(c), details(c)


def test_a_large_invite_to_a_udp_trunk_goes_over_tcp(system, world, tmp_path):
    """The UDP trunk's challenge carries a 1,200-character nonce: our INVITE
    with credentials is then over 1300 bytes and must go over TCP to the same
    address, where a second sipp refuses it (486) and takes its ACK."""
    nonce = "n" * 1200
    udp = Carrier(tmp_path / "udp", "challenge_big_nonce", port=UDP_PORT, fill={"NONCE": nonce})
    tcp = Carrier(tmp_path / "tcp", "reject", "-t", "t1", port=UDP_PORT, fill={"CODE": "486", "REASON": "Busy Here"})
    c = call(system, world.pb)
    assert tcp.wait() == 0, tcp.errors()
    assert udp.wait() == 0, udp.errors()
    assert c["final_state"] == "busy", details(c)
    assert udp.messages().count("INVITE sip:") == 1, udp.errors()   # the first INVITE, small, by UDP
    over_tcp = tcp.messages()
    assert over_tcp.count("INVITE sip:") == 1 and f'nonce="{nonce}"' in over_tcp, over_tcp[-3000:]
    assert "Via: SIP/2.0/TCP" in over_tcp and f'username="{USER}"' in over_tcp


def test_a_trunk_that_refuses_the_connection(system, world):
    c = call(system, world.pa)   # nothing listens on TCP_PORT
    assert c["final_state"] == "provider_error", details(c)
    assert "TCP connection to the trunk" in details(c) and "refused" in details(c), details(c)


@pytest.mark.parametrize("answer,why", [
    (b"SIP/2.0 100 Trying\r\nVia: SIP/2.0/TCP x\r\n\r\n", "without a valid Content-Length"),
    (b"SIP/2.0 180 Ringing\r\nContent-Length: 99999999\r\n\r\n", "without a valid Content-Length"),
    (b"X" * (70 * 1024), "a header block over 64 KiB"),
    (b"", "closed by the trunk"),
])
def test_garbage_on_the_connection_ends_the_call_and_the_dialer_goes_on(system, world, tmp_path, answer, why):
    """A 'trunk' that reads our INVITE, answers garbage and (for b"") just
    closes: the call ends provider_error with the reason, at once, and the
    next call over a new connection completes."""
    srv = socket.create_server(("127.0.0.1", TCP_PORT))
    got = []

    def serve():
        conn, _ = srv.accept()
        with conn:
            got.append(conn.recv(65536))
            if answer:
                conn.sendall(answer)
                conn.recv(1)   # until the dialer closes its side
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        c = call(system, world.pa)
    finally:
        th.join(10)
        srv.close()
    assert got and got[0].startswith(b"INVITE sip:"), got
    assert c["final_state"] == "provider_error" and why in details(c), details(c)
    assert world.dialer.proc.poll() is None, world.dialer.log_tail()
    carrier = Carrier(tmp_path, "answer_callee_bye", "-t", "t1", port=TCP_PORT)
    assert call(system, world.pa)["final_state"] == "completed"
    assert carrier.wait() == 0, carrier.errors()
