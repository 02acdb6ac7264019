"""sipp (Debian's sip-tester) playing a carrier on loopback, for the `sip`
provider's tests: one scenario of tests/system/sipp/ per carrier."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

SIPP = shutil.which("sipp")
SCENARIOS = Path(__file__).resolve().parent / "sipp"


class Carrier:
    """sipp as a trunk on 127.0.0.1:`port`, running one scenario `calls` times.

    Its files (the scenario, msgs.log, sipp-err.log) go to `folder`, so that
    two carriers of one test keep apart."""

    def __init__(self, folder: Path, scenario: str, *args: str, port: int, calls: int = 1,
                 fill: dict[str, str] | None = None):
        assert SIPP, "sipp is needed (Debian's sip-tester; deploy/local/deps.sh installs it)"
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.log = folder / f"{scenario}.log"
        xml = (SCENARIOS / f"{scenario}.xml").read_text()
        for k, v in (fill or {}).items():
            xml = xml.replace(k, v)
        (folder / f"{scenario}.xml").write_text(xml)
        self.proc = subprocess.Popen(
            [SIPP, "-sf", str(folder / f"{scenario}.xml"), "-trace_msg", "-message_file", str(folder / "msgs.log"),
             "-i", "127.0.0.1", "-p", str(port), "-m", str(calls), "-nostdin", "-timeout", "30s",
             "-trace_err", "-error_file", str(folder / "sipp-err.log"), *args],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), cwd=folder)
        self._wait_bound(port, tcp="t1" in args or "tn" in args)

    def _wait_bound(self, port: int, tcp: bool, timeout: float = 10) -> None:
        """Until sipp's socket is bound (read from /proc, so nothing races it
        for the port): a call placed before would go to no one."""
        table, want = ("/proc/net/tcp", "0A") if tcp else ("/proc/net/udp", None)  # 0A: LISTEN
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if int(f[1].rsplit(":", 1)[1], 16) == port and (want is None or f[3] == want):
                    return
            if self.proc.poll() is not None:
                raise AssertionError(f"sipp exited ({self.proc.returncode}) before binding: {self.errors()}")
            time.sleep(0.02)
        raise AssertionError(f"sipp did not bind port {port} within {timeout} s: {self.errors()}")

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def messages(self) -> str:
        """What sipp received and sent so far ("" when nothing)."""
        p = self.folder / "msgs.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def errors(self) -> str:
        logs = [self.folder / n for n in ("sipp-err.log", "msgs.log")]
        return (self.log.read_text() + "".join(x.read_text() for x in logs if x.exists()))[-6000:]


def dialer_env(trunk_port: int, dialer_port: int, **extra: str) -> dict[str, str]:
    """A dialer's environment for the sipp tests: the sip provider, its
    default trunk at 127.0.0.1:`trunk_port`, short timers (T1 50 ms, so
    Timer B is 3.2 s; ring timeout and talk limit 2 s) and a trunk rate that
    never holds a test back; `extra` adds or overrides variables."""
    return {
        "OUTDIAL_DIALER_PROVIDER": "sip",
        "OUTDIAL_SIP_TRUNK": f"127.0.0.1:{trunk_port}",
        "OUTDIAL_SIP_BIND": f"127.0.0.1:{dialer_port}",
        "OUTDIAL_SIP_T1_MS": "50",
        "OUTDIAL_SIP_RING_TIMEOUT_S": "2",
        "OUTDIAL_SIP_MAX_TALK_S": "2",
        "OUTDIAL_SIP_CPS": "100",
        **extra,
    }


def details(call: dict) -> str:
    """A call's events in one line ("status: detail | ..."), for assertion messages and detail checks."""
    return " | ".join(f"{e['status']}: {e.get('detail') or ''}" for e in call["events"])
