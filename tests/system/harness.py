"""Black-box system-test harness for outdial.

Real PostgreSQL + Kafka come from deploy/local/infra.sh (one set per pytest
session, in a temporary folder, on free random ports). Each test module gets a
fresh database and a fresh Kafka topic prefix, and its own copies of the four
services. Everything here times out rather than hangs, and every process that
is started is killed at exit (atexit + fixture finalizers), even after a failure.

Environment knobs:
  OUTDIAL_BUILD_DIR        build folder holding bin/ (default <repo>/build)
  OUTDIAL_SANITIZER_BUILD_DIR  an ASan + UBSan build folder: the modules that set
                           SANITIZED = True run their services from it (make test
                           builds it; unset: they use OUTDIAL_BUILD_DIR like the rest)
  OUTDIAL_TEST_INFRA_DIR   reuse (or create and keep) infra in this folder
                           instead of a temporary one; it is not stopped at exit
  OUTDIAL_TEST_KEEP        1: keep temporary folders (logs, data) and each module's
                           database after the run
  OUTDIAL_TEST_LOG_LEVEL   OUTDIAL_LOG_LEVEL given to services (default info)
"""

from __future__ import annotations

import atexit
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import requests

REPO = Path(__file__).resolve().parents[2]
INFRA_SH = REPO / "deploy" / "local" / "infra.sh"
SQL_DIR = REPO / "proto" / "sql"
BUILD_DIR = Path(os.environ.get("OUTDIAL_BUILD_DIR") or (REPO / "build"))
BIN_DIR = BUILD_DIR / "bin"
_san = os.environ.get("OUTDIAL_SANITIZER_BUILD_DIR")
SANITIZER_BIN_DIR = Path(_san) / "bin" if _san else None

# A sanitizer report must end the service (so a test sees it die), and say where.
SANITIZER_ENV = {
    "ASAN_OPTIONS": "abort_on_error=1:detect_leaks=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}

SERVICES = ("ingress", "scheduler", "dialer", "outcome")
KEEP = os.environ.get("OUTDIAL_TEST_KEEP", "") not in ("", "0")

SIM_TIME_SCALE = "0.01"
REPUTATION_SHORT_CALL_S = "0.06"
DIALER_LEASE_S = "3"
# the key that encrypts the webhook secrets at rest (docs/webhooks.md, "Secrets at rest"): a fixed
# one for tests; a test that needs the service without it, or with another, overrides it
SECRET_KEY = "5e1ec7ed" * 8


class HarnessError(RuntimeError):
    pass


# --------------------------------------------------------------------------- utils


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


_used_ports: set[int] = set()
_port_lock = threading.Lock()


def free_port(span: int = 1) -> int:
    """A free TCP port P on 127.0.0.1 such that P..P+span-1 are all free.

    Ports are picked at random from a range below the kernel's ephemeral range
    and never handed out twice in one run.
    """
    with _port_lock:
        for _ in range(2000):
            p = random.randint(20000, 32000 - span)
            ports = range(p, p + span)
            if any(q in _used_ports for q in ports):
                continue
            if all(_port_free(q) for q in ports):
                _used_ports.update(ports)
                return p
    raise HarnessError("no free port found")


def run(cmd: list[str], *, env: dict | None = None, timeout: float = 60,
        check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    """subprocess.run with a timeout, text output, and a readable error."""
    try:
        cp = subprocess.run(cmd, env=env, input=input, capture_output=True,
                            text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise HarnessError(f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n"
                           f"stdout: {e.stdout}\nstderr: {e.stderr}") from None
    if check and cp.returncode != 0:
        raise HarnessError(f"exit {cp.returncode}: {' '.join(map(str, cmd))}\n"
                           f"stdout: {cp.stdout[-4000:]}\nstderr: {cp.stderr[-4000:]}")
    return cp


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.1,
               what: str = "condition") -> Any:
    """Poll pred() until it returns a truthy value; raise TimeoutError after timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - keep polling, report the last one
            last_exc = e
        if time.monotonic() >= deadline:
            msg = f"timed out after {timeout}s waiting for {what}"
            if last_exc is not None:
                msg += f" (last error: {last_exc!r})"
            raise TimeoutError(msg)
        time.sleep(interval)


def tail(path: Path, n: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return f"<{path} missing>"
    return "\n".join(data.splitlines()[-n:])


# ------------------------------------------------------------- process registry
# Every child process we start is registered so that it can be killed at exit.

_procs: set[subprocess.Popen] = set()
_cleanups: list[Callable[[], None]] = []


def _kill_group(p: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass


@atexit.register
def _cleanup_all() -> None:
    for p in list(_procs):
        if p.poll() is None:
            _kill_group(p)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    _procs.clear()
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception:  # noqa: BLE001
            pass


def _on_sigterm(signum, frame):  # pragma: no cover - only when killed
    _cleanup_all()
    raise SystemExit(128 + signum)


try:
    signal.signal(signal.SIGTERM, _on_sigterm)
except ValueError:  # not in the main thread
    pass


# -------------------------------------------------------------------- infra


INFRA_PREFIX = "outdial-infra-"


def reap_stale_infra() -> None:
    """Destroy temporary infra left behind by a test run that was SIGKILLed."""
    for d in Path(tempfile.gettempdir()).glob(INFRA_PREFIX + "*"):
        try:
            owner = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
            continue  # its run is still alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        run(["bash", str(INFRA_SH), "destroy", str(d)], timeout=120, check=False)


class Infra:
    """PostgreSQL + Kafka run by deploy/local/infra.sh in data_dir."""

    def __init__(self, data_dir: Path | None = None, pg_port: int | None = None,
                 kafka_port: int | None = None):
        self.owned = data_dir is None
        if data_dir is None:
            reap_stale_infra()
            # the PostgreSQL OS user (outdial, when we are root) must reach it: 0755
            data_dir = Path(tempfile.mkdtemp(prefix=INFRA_PREFIX))
            data_dir.chmod(0o755)
            (data_dir / "owner.pid").write_text(str(os.getpid()))
        self.data_dir = Path(data_dir)
        ports = self._saved_ports()
        self.pg_port = pg_port or ports.get("PG_PORT") or free_port()
        self.kafka_port = kafka_port or ports.get("KAFKA_PORT") or free_port(span=2)
        self.started = False
        self.start_seconds: float | None = None

    def _saved_ports(self) -> dict[str, int]:
        f = self.data_dir / "ports.env"
        out: dict[str, int] = {}
        if f.exists():
            for line in f.read_text().splitlines():
                k, _, v = line.partition("=")
                if v.strip().isdigit():
                    out[k.strip()] = int(v)
        return out

    # -- infra.sh
    def _sh(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return run(["bash", str(INFRA_SH), *args], timeout=timeout)

    def start(self) -> "Infra":
        t0 = time.monotonic()
        self._sh("start", str(self.data_dir), str(self.pg_port), str(self.kafka_port),
                 timeout=180)
        self.start_seconds = time.monotonic() - t0
        if not self.started:
            self.started = True
            _cleanups.append(self.close)
        return self

    def stop(self) -> None:
        self._sh("stop", str(self.data_dir), timeout=120)

    def close(self) -> None:
        """Stop (and, for a temporary folder, delete) the infra; idempotent."""
        if not self.started:
            return
        self.started = False
        if not self.owned:
            return  # OUTDIAL_TEST_INFRA_DIR: left running for the next run
        if KEEP:
            self._sh("stop", str(self.data_dir), timeout=120)
        else:
            self._sh("destroy", str(self.data_dir), timeout=120)

    # fault injection
    def kafka_stop(self, hard: bool = False) -> None:
        """Stop the broker: SIGTERM and wait (hard=True: SIGKILL)."""
        self._sh("kafka-kill" if hard else "kafka-stop", str(self.data_dir))

    def kafka_start(self) -> None:
        self._sh("kafka-start", str(self.data_dir), timeout=120)

    def kafka_restart(self, hard: bool = False) -> None:
        self.kafka_stop(hard=hard)
        self.kafka_start()

    def pg_stop(self) -> None:
        self._sh("pg-stop", str(self.data_dir))

    def pg_start(self) -> None:
        self._sh("pg-start", str(self.data_dir))

    def pg_restart(self) -> None:
        self._sh("pg-restart", str(self.data_dir))

    # -- access
    @property
    def brokers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    def dsn(self, db: str = "outdial") -> str:
        return f"host=127.0.0.1 port={self.pg_port} user=outdial dbname={db}"

    def psql(self, sql: str, db: str = "outdial", timeout: float = 30) -> str:
        """Run SQL with `psql -At`; returns stdout stripped (rows by newline, cols by |)."""
        cp = run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                  "-p", str(self.pg_port), "-U", "outdial", "-d", db, "-c", sql],
                 timeout=timeout)
        return cp.stdout.strip()

    def rows(self, sql: str, db: str = "outdial", timeout: float = 30) -> list[list[str]]:
        out = self.psql(sql, db=db, timeout=timeout)
        return [line.split("|") for line in out.splitlines()] if out else []

    def scalar(self, sql: str, db: str = "outdial", timeout: float = 30) -> str | None:
        out = self.psql(sql, db=db, timeout=timeout)
        return out.splitlines()[0] if out else None

    def create_database(self, name: str) -> None:
        self.psql(f'create database "{name}"', db="postgres")

    def drop_database(self, name: str) -> None:
        self.psql(f'drop database if exists "{name}" with (force)', db="postgres")

    def kafka_metadata(self, timeout: float = 15) -> dict:
        cp = run(["kcat", "-b", self.brokers, "-L", "-J", "-m", str(int(timeout))],
                 timeout=timeout + 5)
        return json.loads(cp.stdout)

    def topics(self) -> dict[str, int]:
        """topic name -> partition count."""
        md = self.kafka_metadata()
        return {t["topic"]: len(t.get("partitions", [])) for t in md.get("topics", [])}

    # Kafka's own admin tools (from the jars deps.sh fetched), one JVM per call
    def kafka_tool(self, main_class: str, *args: str, timeout: float = 60) -> str:
        home = os.environ.get("KAFKA_HOME") or str(
            Path(os.environ.get("OUTDIAL_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "outdial")
            / f"kafka-{os.environ.get('OUTDIAL_KAFKA_VERSION', '3.9.1')}")
        cmd = ["java", "-Xmx256m", "-Dlog4j.configuration=file:" + home + "/config/tools-log4j.properties",
               "-cp", home + "/libs/*", main_class, "--bootstrap-server", self.brokers, *args]
        return run(cmd, timeout=timeout).stdout

    def create_topic(self, name: str, partitions: int = 4) -> None:
        self.kafka_tool("org.apache.kafka.tools.TopicCommand", "--create", "--topic", name,
                        "--partitions", str(partitions), "--replication-factor", "1")

    def describe_group(self, group: str) -> list[dict]:
        """Committed offsets and lag of a consumer group (ConsumerGroupCommand)."""
        out = self.kafka_tool("org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                              "--describe", "--group", group)
        rows, header = [], None
        for line in out.splitlines():
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "GROUP":
                header = [h.lower() for h in parts]
            elif header and len(parts) == len(header):
                rows.append(dict(zip(header, parts)))
        return rows

    def produce(self, topic: str, lines: Iterable[str], key_delim: str | None = None,
                timeout: float = 15) -> None:
        cmd = ["kcat", "-b", self.brokers, "-P", "-t", topic,
               "-X", f"message.timeout.ms={int(timeout * 1000) - 2000}"]
        if key_delim:
            cmd += ["-K", key_delim]
        run(cmd, input="".join(line + "\n" for line in lines), timeout=timeout + 5)

    def consume(self, topic: str, timeout: float = 10, max_msgs: int | None = None) -> list[dict]:
        """Read a topic from the beginning with kcat; one dict per message
        (key, payload, partition, offset). Stops at the end of every partition."""
        cmd = ["kcat", "-b", self.brokers, "-C", "-t", topic, "-o", "beginning", "-e",
               "-J", "-q", "-m", str(int(timeout))]
        if max_msgs:
            cmd += ["-c", str(max_msgs)]
        cp = run(cmd, timeout=timeout + 10)
        return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]


# ------------------------------------------------------------------ services


class Service:
    """One outdial daemon: start(), kill9(), term(), restart(); logs in log_dir."""

    def __init__(self, name: str, binary: str | Path, env: dict[str, str],
                 log_dir: Path, http_port: int | None = None, args: Iterable[str] = ()):
        self.name = name
        self.binary = Path(binary) if os.sep in str(binary) else BIN_DIR / binary
        self.http_port = http_port or free_port()
        self.env = dict(env)
        self.env["OUTDIAL_HTTP_PORT"] = str(self.http_port)
        self.args = list(args)
        self.log_dir = Path(log_dir)
        self.proc: subprocess.Popen | None = None
        self.generation = 0
        self.log_path = self.log_dir / f"{name}.log"

    def __repr__(self) -> str:
        return f"<Service {self.name} port={self.http_port} pid={self.pid}>"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, timeout: float = 20) -> "Service":
        if self.running():
            raise HarnessError(f"{self.name} already running (pid {self.pid})")
        if not self.binary.exists():
            raise HarnessError(f"{self.name}: binary {self.binary} not found "
                               f"(build first, or set OUTDIAL_BUILD_DIR)")
        self.generation += 1
        self.log_path = self.log_dir / f"{self.name}.{self.generation}.log"
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), *self.args], env=self.env, stdin=subprocess.DEVNULL,
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            logf.close()
        _procs.add(self.proc)
        if wait:
            self.wait_ready(timeout)
        return self

    def _fail(self, msg: str) -> None:
        raise HarnessError(f"{self.name}: {msg}\n--- tail of {self.log_path}:\n{self.log_tail()}")

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            if self.proc is None or self.proc.poll() is not None:
                rc = None if self.proc is None else self.proc.returncode
                self._fail(f"exited (code {rc}) before /readyz answered 200")
            try:
                r = requests.get(self.url + "/readyz", timeout=1)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except requests.RequestException as e:
                last = repr(e)
            if time.monotonic() >= deadline:
                self._fail(f"/readyz not 200 after {timeout}s (last: {last})")
            time.sleep(0.1)

    def kill9(self) -> int | None:
        """SIGKILL the service (its whole process group); returns the exit code."""
        if self.proc is None:
            return None
        _kill_group(self.proc, signal.SIGKILL)
        try:
            rc = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._fail("did not die after SIGKILL within 10 s")
        _procs.discard(self.proc)
        return rc

    def term(self, timeout: float = 30) -> int | None:
        """SIGTERM, wait for exit, return the exit code (a drain should give 0).
        After `timeout` it is SIGKILLed and HarnessError raised."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(self.proc, signal.SIGKILL)
                self.proc.wait(timeout=10)
                _procs.discard(self.proc)
                self._fail(f"did not exit within {timeout}s of SIGTERM (killed)")
        _procs.discard(self.proc)
        return self.proc.returncode

    def stop(self, timeout: float = 15) -> int | None:
        """term(), falling back to kill9 without raising; for teardown."""
        if self.proc is None:
            return None
        try:
            return self.term(timeout)
        except HarnessError:
            return self.proc.returncode

    def restart(self, hard: bool = False, wait: bool = True, timeout: float = 20) -> "Service":
        if hard:
            self.kill9()
        else:
            self.term()
        return self.start(wait=wait, timeout=timeout)

    # -- introspection
    def get(self, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", 5)
        return requests.get(self.url + path, **kw)

    def metrics(self) -> dict[str, float]:
        """Prometheus text → {'name{labels}': value}."""
        out: dict[str, float] = {}
        for line in self.get("/metrics").text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, val = line.rpartition(" ")
            try:
                out[key] = float(val)
            except ValueError:
                pass
        return out

    def log_tail(self, n: int = 40) -> str:
        return tail(self.log_path, n)

    def log_lines(self, all_generations: bool = True) -> list[dict]:
        """Parsed JSON log lines (non-JSON lines come back as {'raw': line})."""
        paths = ([self.log_dir / f"{self.name}.{g}.log" for g in range(1, self.generation + 1)]
                 if all_generations else [self.log_path])
        out: list[dict] = []
        for p in paths:
            if not p.exists():
                continue
            for line in p.read_text(errors="replace").splitlines():
                try:
                    obj = json.loads(line)
                    out.append(obj if isinstance(obj, dict) else {"raw": line})
                except ValueError:
                    out.append({"raw": line})
        return out


# ------------------------------------------------------------------------ API


class Api(requests.Session):
    """requests.Session against ingress: relative paths, Bearer key, default timeout."""

    def __init__(self, base_url: str, key: str | None = None, timeout: float = 10):
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.default_timeout = timeout
        self.key = key
        if key:
            self.headers["Authorization"] = f"Bearer {key}"

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        if url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, *args, **kwargs)

    def create_call(self, phone: str, scenario: str = "appointment_reminder",
                    idempotency_key: str | None = None, **body) -> requests.Response:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return self.post("/v1/calls", json={"scenario": scenario, "phone": phone, **body},
                         headers=headers)

    def call(self, call_id: str) -> dict:
        r = self.get(f"/v1/calls/{call_id}")
        if r.status_code != 200:
            raise HarnessError(f"GET /v1/calls/{call_id}: {r.status_code} {r.text[:500]}")
        return r.json()

    def wait_final(self, call_id: str, timeout: float = 30, interval: float = 0.1) -> dict:
        """Poll GET /v1/calls/{id} until final_state is not null; return the call."""
        last: dict = {}

        def done():
            nonlocal last
            last = self.call(call_id)
            return last.get("final_state") is not None

        try:
            wait_until(done, timeout, interval, what=f"call {call_id} to reach a final state")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last seen: {json.dumps(last)[:1000]}") from None
        return last


@dataclass
class Project:
    id: str
    admin_key: str
    key: str
    key_id: str
    scopes: list[str]
    caller_id: str
    scenario: str
    api: Api          # with `key` (the given scopes)
    admin: Api        # with `admin_key`

    def wait_final(self, call_id: str, timeout: float = 30) -> dict:
        return self.admin.wait_final(call_id, timeout)


# --------------------------------------------------------------------- system


@dataclass
class System:
    """One module's outdial: its own database, topic prefix and four services."""

    infra: Infra
    name: str
    base_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    partitions: int = 4
    bin_dir: Path = BIN_DIR  # where the services and outdialctl come from
    services: dict[str, Service] = field(default_factory=dict)
    projects: list[Project] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.db = f"t_{tag}"
        self.prefix = f"t{tag}."
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir = self.base_dir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.dial_log = self.base_dir / "dials.log"
        self.dial_log.touch()

    # -- environment
    @property
    def dsn(self) -> str:
        return self.infra.dsn(self.db)

    def env(self, **over: str) -> dict[str, str]:
        e = dict(os.environ)
        e.update({
            "OUTDIAL_PG_DSN": self.dsn,
            "OUTDIAL_KAFKA_BROKERS": self.infra.brokers,
            "OUTDIAL_TOPIC_PREFIX": self.prefix,
            "OUTDIAL_LOG_LEVEL": os.environ.get("OUTDIAL_TEST_LOG_LEVEL", "info"),
            "OUTDIAL_SIM_TIME_SCALE": SIM_TIME_SCALE,
            # the short hang-up threshold scaled like the sim's times (6 s x 0.01): a sim call's
            # usual talk (25 s x 0.01) is not short, sim_talk_ms under 60 makes one
            "OUTDIAL_REPUTATION_SHORT_CALL_S": REPUTATION_SHORT_CALL_S,
            "OUTDIAL_SIM_DIAL_LOG": str(self.dial_log),
            "OUTDIAL_DIALER_LEASE_S": DIALER_LEASE_S,
            "OUTDIAL_CONSOLE_DIR": str(REPO / "services" / "ingress" / "console"),
            # every test client is 127.0.0.1, like tenants behind one NAT: the per-address
            # limit on unknown keys would let one test's bad keys refuse the next test's
            # new ones (test_flood sets it back and tests it)
            "OUTDIAL_AUTH_FAIL_MAX": "1000000",
            "OUTDIAL_SECRET_KEY": os.environ.get("OUTDIAL_SECRET_KEY") or SECRET_KEY,
        })
        e.update(self.extra_env)
        e.update(over)
        return e

    def topic(self, short: str) -> str:
        """'calls.requested' -> '<prefix>calls.requested'."""
        return self.prefix + short

    # -- setup / teardown
    def setup(self, start: Iterable[str] = SERVICES) -> "System":
        missing = [b for b in ("outdialctl", *(f"outdial-{s}" for s in SERVICES))
                   if not (self.bin_dir / b).exists()]
        if missing:
            raise HarnessError(f"binaries missing in {self.bin_dir}: {', '.join(missing)} "
                               f"(build first, or set OUTDIAL_BUILD_DIR)")
        self.infra.create_database(self.db)
        self.ctl("migrate", "--dir", str(SQL_DIR), json_out=False, timeout=60)
        self.ctl("topics", "create", "--partitions", str(self.partitions), json_out=False, timeout=60)
        for s in SERVICES:
            self.add_service(s, start=False)
        self.start_services(start)
        return self

    def add_service(self, name: str, binary: str | None = None, start: bool = True,
                    **env: str) -> Service:
        """Register (and start) a service. Extra copies: add_service('dialer2',
        'outdial-dialer', OUTDIAL_DIALER_MAX_CALLS='5')."""
        e = self.env(**env)
        if self.bin_dir == SANITIZER_BIN_DIR:
            e = {**SANITIZER_ENV, **e}  # unless the run set its own
        svc = Service(name, self.bin_dir / (binary or f"outdial-{name}"), e, self.log_dir)
        self.services[name] = svc
        if start:
            svc.start()
        return svc

    def start_services(self, names: Iterable[str]) -> None:
        names = list(names)
        for n in names:
            self.services[n].start(wait=False)
        for n in names:
            self.services[n].wait_ready(20)

    SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def sanitizer_reports(self) -> list[str]:
        """Reports of ASan, LeakSanitizer or UBSan in any log of this system's
        services (every generation): a sanitizer build prints them to stderr,
        often at exit, where no test would see them otherwise."""
        found = []
        for p in sorted(self.log_dir.glob("*.log")):
            text = p.read_text(errors="replace")
            at = [i for i in (text.find(m) for m in self.SANITIZER_MARKERS) if i >= 0]
            if at:
                found.append(f"===== {p}\n{text[min(at):min(at) + 4000]}")
        return found

    def teardown(self) -> None:
        for svc in self.services.values():
            svc.stop(timeout=10)
        reports = self.sanitizer_reports()
        try:
            if self.infra.started and not KEEP:  # kept with the logs, for a look after a failure
                self.infra.drop_database(self.db)
        except Exception:  # noqa: BLE001 - best effort
            pass
        if reports:  # fails the module's last test (a teardown error), so CI goes red
            raise HarnessError("sanitizer reports in the service logs:\n" + "\n".join(reports))

    def __getitem__(self, name: str) -> Service:
        return self.services[name]

    @property
    def ingress(self) -> Service:
        return self.services["ingress"]

    @property
    def scheduler(self) -> Service:
        return self.services["scheduler"]

    @property
    def dialer(self) -> Service:
        return self.services["dialer"]

    @property
    def outcome(self) -> Service:
        return self.services["outcome"]

    @property
    def url(self) -> str:
        return self.ingress.url

    # -- outdialctl
    def ctl(self, *args: str, json_out: bool = True, timeout: float = 30,
            check: bool = True) -> Any:
        """Run outdialctl with this system's env. json_out: add --json, parse stdout."""
        cmd = [str(self.bin_dir / "outdialctl"), *map(str, args)]
        if json_out:
            cmd.append("--json")
        cp = run(cmd, env=self.env(), timeout=timeout, check=check)
        if not json_out or not check:
            return cp
        try:
            return json.loads(cp.stdout)
        except ValueError:
            raise HarnessError(f"outdialctl {' '.join(args)}: not JSON: {cp.stdout!r}") from None

    # -- API
    def api(self, key: str | None = None, timeout: float = 10) -> Api:
        return Api(self.url, key, timeout)

    def new_project(self, pacing: int | None = 600, wallet: int | None = 1_000_000_000,
                    scopes: Iterable[str] = ("outbound:trigger", "sessions:read"),
                    name: str | None = None, caller_id: str | None = None,
                    scenario: str = "appointment_reminder",
                    calls_per_min: int | None = None,
                    requests_per_hour: int | None = None) -> Project:
        """A project with a funded wallet, an admin key, a key with `scopes`, one
        verified caller ID and the scenario `appointment_reminder`."""
        name = name or f"p-{uuid.uuid4().hex[:8]}"
        args = ["project", "create", name]
        if pacing is not None:
            args += ["--pacing", str(pacing)]
        if wallet is not None:
            args += ["--wallet", str(wallet)]
        pid = str(self.ctl(*args)["id"])
        if calls_per_min is not None or requests_per_hour is not None:
            sargs = ["project", "set", pid]
            if calls_per_min is not None:
                sargs += ["--calls-per-min", str(calls_per_min)]
            if requests_per_hour is not None:
                sargs += ["--requests-per-hour", str(requests_per_hour)]
            self.ctl(*sargs, json_out=False)
        self.ctl("scenario", "add", pid, scenario, "--disclosure",
                 "This is an automated call from an AI assistant.", json_out=False)
        caller_id = caller_id or f"+1415555{random.randint(1000, 9999)}"
        self.ctl("caller-id", "add", pid, caller_id, json_out=False)
        admin = self.ctl("key", "create", pid, "--scopes", "admin", "--name", "admin")
        scopes = list(scopes)
        k = self.ctl("key", "create", pid, "--scopes", ",".join(scopes), "--name", "test")
        p = Project(id=pid, admin_key=admin["key"], key=k["key"], key_id=str(k["id"]),
                    scopes=scopes, caller_id=caller_id, scenario=scenario,
                    api=self.api(k["key"]), admin=self.api(admin["key"]))
        self.projects.append(p)
        return p

    def wait_final(self, call_id: str, timeout: float = 30, api: Api | None = None) -> dict:
        """Poll the call until final; uses the latest project's admin key by default."""
        if api is None:
            if not self.projects:
                raise HarnessError("wait_final: no project yet; pass api=")
            api = self.projects[-1].admin
        return api.wait_final(call_id, timeout)

    # -- dial log (written by the sim provider: `<time> <call_id> <phone>`)
    def dials(self) -> list[tuple[str, str, str]]:
        out = []
        for line in self.dial_log.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.append((parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
        return out

    def dial_count(self, call_id: str | None = None) -> int:
        """How many dials the sim placed for call_id (all dials if None)."""
        return sum(1 for d in self.dials() if call_id is None or d[1] == str(call_id))

    # -- database
    def psql(self, sql: str, timeout: float = 30) -> str:
        return self.infra.psql(sql, db=self.db, timeout=timeout)

    def rows(self, sql: str, timeout: float = 30) -> list[list[str]]:
        return self.infra.rows(sql, db=self.db, timeout=timeout)

    def scalar(self, sql: str, timeout: float = 30) -> str | None:
        return self.infra.scalar(sql, db=self.db, timeout=timeout)

    # -- diagnostics
    def log_tails(self, n: int = 30) -> str:
        return "\n".join(f"===== {s.name} ({s.log_path})\n{s.log_tail(n)}"
                         for s in self.services.values())


def make_base_dir(prefix: str) -> Path:
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    if not KEEP:
        _cleanups.append(lambda: shutil.rmtree(d, ignore_errors=True))
    return d
