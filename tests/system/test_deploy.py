"""The deployment files, checked offline: deploy/docker/Dockerfile,
docker-compose.yml and deploy/k8s/.

Starts nothing (no PostgreSQL, Kafka or services: it asks for none of
conftest.py's fixtures) and needs no container engine: no image is built or
pulled here.
What it needs: the built binaries (their --help is the source of truth for
configuration names, ldd tells which libraries they load), Debian's
docker-compose (1.29) and PyYAML, dpkg on a Debian 12 host, and
kubernetes-validate from PyPI in <cache>/python-k8s (deploy/local/deps.sh puts
them there). `kubectl kustomize` is used too when kubectl is installed.

Kubernetes version of the schemas: K8S_VERSION (1.30), strict (unknown fields
are errors).
"""

from __future__ import annotations

import base64
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import BIN_DIR, REPO

yaml = pytest.importorskip("yaml")

K8S_VERSION = "1.30.0"
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "docker-compose.yml"
K8S = REPO / "deploy" / "k8s"
ADAPTER_RULES = K8S / "prometheus-adapter-rules.yaml"
RUN_SH = REPO / "deploy" / "local" / "run.sh"
DEPS_SH = REPO / "deploy" / "local" / "deps.sh"

DAEMONS = ("outdial-ingress", "outdial-scheduler", "outdial-dialer", "outdial-outcome")
BINARIES = DAEMONS + ("outdialctl",)
COMPOSE_SERVICES = {"ingress": "outdial-ingress", "scheduler": "outdial-scheduler",
                    "dialer": "outdial-dialer", "outcome": "outdial-outcome"}
# run.sh's outdialctl commands the Kubernetes Job leaves out (production has
# no demo project; README "Deploy")
K8S_JOB_SKIPS = {("demo",)}
# libc functions that read the local time zone (they need tzdata in the image)
LOCAL_TIME_FUNCS = {"localtime", "localtime_r", "mktime", "tzset", "strftime", "ctime",
                    "ctime_r", "timelocal", "strptime", "asctime"}
SANITIZER_LIBS = re.compile(r"^lib(asan|ubsan|lsan|tsan)\.so")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


# ------------------------------------------------------------ configuration names


@functools.lru_cache(maxsize=None)
def config_names(binary: str) -> frozenset[str]:
    """The OUTDIAL_* names a program reads, from its --help."""
    path = BIN_DIR / binary
    assert path.exists(), f"{path} missing: build first (or set OUTDIAL_BUILD_DIR)"
    p = _run([str(path), "--help"])
    text = p.stdout + p.stderr
    if binary == "outdialctl":
        env = text.split("Environment:", 1)
        assert len(env) == 2, "outdialctl --help has no Environment: section"
        names = re.findall(r"\b(OUTDIAL_[A-Z0-9_]+)", env[1])
    else:
        names = re.findall(r"^  (OUTDIAL_[A-Z0-9_]+) \(", text, re.M)
    assert names, f"{binary} --help lists no configuration"
    return frozenset(names)


def config_default(binary: str, name: str) -> str:
    text = _run([str(BIN_DIR / binary), "--help"]).stdout
    m = re.search(rf"^  {name} \([a-z]+, default: \"([^\"]*)\"\)", text, re.M)
    assert m, f"{binary} --help has no default for {name}"
    return m.group(1)


def program_of(command) -> str:
    """Which of our programs a container command runs (also inside sh -c)."""
    words = command if isinstance(command, list) else shlex.split(command)
    for w in words:
        for token in re.split(r"[\s;&|()]+", w):
            if token in BINARIES:
                return token
    raise AssertionError(f"command {command!r} runs none of {BINARIES}")


def outdialctl_commands(script: str) -> list[list[str]]:
    """The outdialctl invocations of a `sh -c` script (joined with &&)."""
    cmds = []
    for part in re.split(r"&&|;|\n", script):
        words = shlex.split(part)
        if words and words[0] == "outdialctl":
            cmds.append(words[1:])
    return cmds


def run_sh_commands() -> list[list[str]]:
    """What `make run` runs with outdialctl before its services start."""
    cmds = []
    for line in RUN_SH.read_text().splitlines():
        m = re.search(r'"\$BIN/outdialctl"\s+(.*?)\s*\)?$', line)
        if m:
            cmds.append(shlex.split(m.group(1).rstrip(")")))
    assert cmds, "no outdialctl command found in run.sh"
    return cmds


def _verb(cmd: list[str]) -> tuple[str, ...]:
    return tuple(w for w in cmd if not w.startswith("-") and not w.isdigit()
                 and not w.startswith("/"))


def _opt(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd else None


def check_same_commands(got: list[list[str]], want: list[list[str]], where: str) -> None:
    """got runs want's outdialctl commands, in order, with the same --partitions."""
    assert [_verb(c) for c in got] == [_verb(c) for c in want], \
        f"{where} runs {got}, `make run` runs {want}"
    for g, w in zip(got, want):
        assert _opt(g, "--partitions") == _opt(w, "--partitions"), \
            f"{where}: {g} has other partitions than run.sh's {w}"


# ---------------------------------------------------------------------- compose


def compose_cmd() -> list[str]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose missing (Debian package docker-compose; deploy/local/deps.sh)"
    return [exe, "-f", str(COMPOSE), "--project-directory", str(REPO)]


@functools.lru_cache(maxsize=None)
def compose_config() -> dict:
    p = _run(compose_cmd() + ["config"], cwd=REPO)
    assert p.returncode == 0, f"docker-compose config failed:\n{p.stderr}"
    return yaml.safe_load(p.stdout)


def _duration_s(v) -> float:
    if isinstance(v, (int, float)):
        return float(v)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|s|m|h)", v)
    assert parts and "".join(a + b for a, b in parts) == v, f"bad duration {v!r}"
    mult = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    return sum(float(a) * mult[b] for a, b in parts)


def _env_dict(env) -> dict:
    if isinstance(env, list):
        return dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return dict(env or {})


def test_compose_config_is_valid():
    p = _run(compose_cmd() + ["config", "-q"], cwd=REPO)
    assert p.returncode == 0, p.stderr


def test_compose_infrastructure():
    svc = compose_config()["services"]
    assert set(svc) == {"postgres", "kafka", "migrate", *COMPOSE_SERVICES}
    pg, kafka = svc["postgres"], svc["kafka"]
    assert pg["image"] == "postgres:15"
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert kafka["image"] == "apache/kafka:3.9.1"
    assert "/opt/kafka/bin/" in " ".join(kafka["healthcheck"]["test"])
    env = {k: str(v) for k, v in _env_dict(kafka["environment"]).items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@")
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENERS"]
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    # KRaft's cluster id: 16 bytes, base64url without padding
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    brokers = {_env_dict(svc[s]["environment"]).get("OUTDIAL_KAFKA_BROKERS")
               for s in ("migrate", *COMPOSE_SERVICES)}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split("://", 1)[1]
    assert brokers == {advertised}, f"services use {brokers}, kafka advertises {advertised}"


def test_compose_services_start_in_order_and_report_health():
    svc = compose_config()["services"]
    mig = svc["migrate"]
    assert mig["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                 "kafka": {"condition": "service_healthy"}}
    assert mig.get("restart", "no") == "no"
    published = {name for name, s in svc.items() if s.get("ports")}
    assert published == {"ingress"}, f"services publishing ports: {published}"
    for name, program in COMPOSE_SERVICES.items():
        s = svc[name]
        assert program_of(s["command"]) == program
        assert s["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}, name
        env = _env_dict(s["environment"])
        port = env.get("OUTDIAL_HTTP_PORT") or config_default(program, "OUTDIAL_HTTP_PORT")
        test = " ".join(s["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/readyz" in test, f"{name}: healthcheck {test}"
        drain = float(env.get("OUTDIAL_DRAIN_S") or config_default(program, "OUTDIAL_DRAIN_S"))
        assert _duration_s(s["stop_grace_period"]) > drain, f"{name}: stop_grace_period <= drain"
        assert s["build"]["dockerfile"] == "deploy/docker/Dockerfile"
        assert Path(s["build"]["context"]).resolve() == REPO
    assert svc["dialer"]["deploy"]["replicas"] >= 2
    # copies of one service must not share an id or a name
    assert not _env_dict(svc["dialer"]["environment"]).get("OUTDIAL_DIALER_ID")
    assert "container_name" not in svc["dialer"]
    ingress_port = _env_dict(svc["ingress"]["environment"])["OUTDIAL_HTTP_PORT"]
    targets = {str(p["target"]) if isinstance(p, dict) else str(p).rsplit(":", 1)[-1]
               for p in svc["ingress"]["ports"]}
    assert targets == {ingress_port}


def test_compose_migrate_runs_what_make_run_runs():
    command = compose_config()["services"]["migrate"]["command"]
    script = command[-1] if isinstance(command, list) else command
    check_same_commands(outdialctl_commands(script), run_sh_commands(), "docker-compose migrate")


def test_compose_variables_are_configuration_names():
    svc = compose_config()["services"]
    bad = []
    for name in ("migrate", *COMPOSE_SERVICES):
        program = program_of(svc[name]["command"])
        for var in _env_dict(svc[name].get("environment")):
            if var.startswith("OUTDIAL_") and var not in config_names(program):
                bad.append(f"{name}: {var} ({program} does not read it)")
    assert not bad, bad


# -------------------------------------------------------------------- kubernetes


@functools.lru_cache(maxsize=None)
def k8s_docs() -> tuple[tuple[str, dict], ...]:
    """(file, document) for every resource the kustomization lists."""
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    docs = []
    for res in kust["resources"]:
        path = K8S / res
        assert path.is_file(), f"kustomization.yaml lists {res}, which is not a file"
        for d in yaml.safe_load_all(path.read_text()):
            if d:
                assert "kind" in d and "apiVersion" in d, f"{res}: not a Kubernetes resource"
                docs.append((res, d))
    return tuple(docs)


def _of_kind(kind: str) -> list[dict]:
    return [d for _, d in k8s_docs() if d["kind"] == kind]


def _by_name(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in _of_kind(kind)}


def _workloads() -> list[tuple[dict, dict]]:
    """(workload, pod spec) of every Deployment and Job."""
    out = []
    for kind in ("Deployment", "Job"):
        for d in _of_kind(kind):
            out.append((d, d["spec"]["template"]["spec"]))
    return out


def _container_env(c: dict) -> dict[str, object]:
    """The container's environment: envFrom maps resolved, then env (wins)."""
    maps, secrets = _by_name("ConfigMap"), _by_name("Secret")
    env: dict[str, object] = {}
    for ref in c.get("envFrom", []):
        if "configMapRef" in ref:
            src = maps[ref["configMapRef"]["name"]].get("data", {})
        else:
            s = secrets[ref["secretRef"]["name"]]
            src = {**s.get("data", {}), **s.get("stringData", {})}
        env.update({ref.get("prefix", "") + k: v for k, v in src.items()})
    for e in c.get("env", []):
        env[e["name"]] = e.get("value", e.get("valueFrom"))
    return env


def _value(v) -> str | None:
    """A plain value, or the value a configMapKeyRef points at."""
    if isinstance(v, dict) and "configMapKeyRef" in v:
        ref = v["configMapKeyRef"]
        return _by_name("ConfigMap")[ref["name"]]["data"][ref["key"]]
    return v if isinstance(v, str) else None


def k8s_validator() -> list[str]:
    cache = Path(os.environ.get("OUTDIAL_CACHE")
                 or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "outdial")
    pydir = cache / "python-k8s"
    assert (pydir / "kubernetes_validate").is_dir(), \
        f"kubernetes-validate not in {pydir}: run deploy/local/deps.sh"
    return [str(pydir)]


# kubernetes-validate in its own folder and process: it needs a newer
# jsonschema than the one the other tests import (deploy/local/deps.sh)
VALIDATE_PY = r"""
import json, sys
import kubernetes_validate.utils as u
out = []
for d in json.load(sys.stdin):
    try:
        u.validate(d, sys.argv[1], strict=True)
        out.append(None)
    except u.ValidationError as e:
        out.append(".".join(map(str, e.path)) + ": " + e.message)
    except (u.SchemaNotFoundError, u.InvalidSchemaError) as e:
        out.append("no schema: " + str(e))
json.dump(out, sys.stdout)
"""


def validate_k8s(docs: list[dict]) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(k8s_validator())}
    p = subprocess.run([sys.executable, "-c", VALIDATE_PY, K8S_VERSION], input=json.dumps(docs),
                       capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    results = json.loads(p.stdout)
    return [f"{d['kind']}/{d['metadata']['name']}: {r}" for d, r in zip(docs, results) if r]


def test_k8s_manifests_match_the_schemas():
    docs = [d for _, d in k8s_docs()]
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service",
            "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job"} <= kinds
    assert validate_k8s(docs) == []


def test_k8s_kustomization_renders():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kust["namespace"] == _of_kind("Namespace")[0]["metadata"]["name"]
    assert any(i["name"] == "outdial" for i in kust["images"])
    images = {c["image"] for _, spec in _workloads() for c in spec["containers"]}
    assert images == {"outdial"}, f"containers use {images}, kustomization rewrites 'outdial'"
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed: the resources were validated one by one")
    p = _run(["kubectl", "kustomize", str(K8S)])
    assert p.returncode == 0, p.stderr
    rendered = [d for d in yaml.safe_load_all(p.stdout) if d]
    assert len(rendered) == len(k8s_docs())
    for d in rendered:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == kust["namespace"], d["metadata"]["name"]
    assert validate_k8s(rendered) == []


def test_k8s_variables_are_configuration_names():
    bad = []
    for w, spec in _workloads():
        for c in spec["containers"]:
            program = program_of(c["command"])
            for var in _container_env(c):
                if var.startswith("OUTDIAL_") and var not in config_names(program):
                    bad.append(f"{w['metadata']['name']}: {var} ({program} does not read it)")
    assert not bad, bad


def test_k8s_references_resolve():
    maps, secrets = _by_name("ConfigMap"), _by_name("Secret")
    used_secret_keys = set()
    for w, spec in _workloads():
        for c in spec["containers"]:
            for ref in c.get("envFrom", []):
                if "configMapRef" in ref:
                    assert ref["configMapRef"]["name"] in maps, ref
                if "secretRef" in ref:
                    assert ref["secretRef"]["name"] in secrets, ref
            for e in c.get("env", []):
                vf = e.get("valueFrom", {})
                if "configMapKeyRef" in vf:
                    r = vf["configMapKeyRef"]
                    assert r["key"] in maps[r["name"]]["data"], f"{e['name']}: no {r}"
                if "secretKeyRef" in vf:
                    r = vf["secretKeyRef"]
                    assert r["key"] in secrets[r["name"]]["stringData"], f"{e['name']}: no {r}"
                    used_secret_keys.add((r["name"], r["key"]))
                    assert r["key"] == e["name"], "a secret's key is the variable it sets"
    for name, s in secrets.items():
        unused = {k for k in s["stringData"] if (name, k) not in used_secret_keys}
        assert not unused, f"Secret {name}: keys no container uses: {unused}"
    # every Secret value is a placeholder, never a real secret
    for s in secrets.values():
        for k, v in s["stringData"].items():
            assert "REPLACE_ME" in v, f"Secret key {k} is not a placeholder"


def _dockerfile_uid() -> int:
    user = [args for instr, args in dockerfile_stages()[-1]["instructions"] if instr == "USER"]
    return int(user[-1].split(":")[0])


def test_k8s_deployments_probes_resources_security():
    deployments = _of_kind("Deployment")
    assert {program_of(d["spec"]["template"]["spec"]["containers"][0]["command"])
            for d in deployments} == set(DAEMONS)
    uid = _dockerfile_uid()
    for w, spec in _workloads():
        name = w["metadata"]["name"]
        for c in spec["containers"]:
            program = program_of(c["command"])
            sec = {**spec.get("securityContext", {}), **c.get("securityContext", {})}
            assert sec.get("runAsNonRoot") is True, name
            assert sec.get("runAsUser") == uid, f"{name}: runAsUser is not the image's uid {uid}"
            assert sec.get("readOnlyRootFilesystem") is True, name
            assert sec.get("allowPrivilegeEscalation") is False, name
            res = c.get("resources", {})
            assert {"cpu", "memory"} <= set(res.get("requests", {})), f"{name}: requests"
            assert {"cpu", "memory"} <= set(res.get("limits", {})), f"{name}: limits"
            if w["kind"] != "Deployment":
                continue
            env = _container_env(c)
            port = int(_value(env.get("OUTDIAL_HTTP_PORT"))
                       or config_default(program, "OUTDIAL_HTTP_PORT"))
            assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}, name
            assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}, name
            assert port in {p["containerPort"] for p in c["ports"]}, name
            drain = int(_value(env.get("OUTDIAL_DRAIN_S")) or config_default(program, "OUTDIAL_DRAIN_S"))
            assert spec["terminationGracePeriodSeconds"] > drain, f"{name}: grace <= drain {drain}"
            assert _value(env.get("OUTDIAL_HTTP_HOST")) == "0.0.0.0", name


def _dialer() -> dict:
    [d] = [d for d in _of_kind("Deployment")
           if program_of(d["spec"]["template"]["spec"]["containers"][0]["command"]) == "outdial-dialer"]
    return d


def test_k8s_dialer_identity_per_pod():
    c = _dialer()["spec"]["template"]["spec"]["containers"][0]
    env = c["env"]
    names = [e["name"] for e in env]
    by = {e["name"]: e for e in env}
    assert by["OUTDIAL_DIALER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    url = by["OUTDIAL_ENGINE_CALLBACK_URL"]["value"]
    m = re.fullmatch(r"http://\$\((\w+)\):(\d+)", url)
    assert m, url
    var, port = m.groups()
    assert by[var]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    # $(VAR) expands only from variables defined before it
    assert names.index(var) < names.index("OUTDIAL_ENGINE_CALLBACK_URL")
    assert port == _value(_container_env(c)["OUTDIAL_HTTP_PORT"])


def _topic_partitions() -> int:
    [job] = _of_kind("Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    [topics] = [c for c in outdialctl_commands(script) if c[:2] == ["topics", "create"]]
    return int(_opt(topics, "--partitions"))


def test_k8s_dialer_autoscaler():
    dialer = _dialer()
    [hpa] = _of_kind("HorizontalPodAutoscaler")
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dialer["metadata"]["name"])
    assert "replicas" not in dialer["spec"], "the HPA owns the dialers' replicas"
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    # beyond the partitions of calls.dispatch a dialer gets nothing to do
    assert hpa["spec"]["maxReplicas"] <= _topic_partitions()
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    ext = metrics["External"]["external"]["metric"]
    # the metric the dialer exports, with the label value of its consumer group
    consumer = (REPO / "libs" / "kafka" / "src" / "consumer.c").read_text()
    assert f'"{ext["name"]}"' in consumer, f"no gauge {ext['name']} in consumer.c"
    assert re.search(r'od__klabel\(label, sizeof\(label\), "client", group\)', consumer)
    dialer_c = (REPO / "services" / "dialer" / "dialer.c").read_text()
    suffix = re.search(r'topic\(conf->common\.topic_prefix, "(\w+)"\)', dialer_c).group(1)
    prefix = _value(_container_env(dialer["spec"]["template"]["spec"]["containers"][0])
                    ["OUTDIAL_TOPIC_PREFIX"])
    assert ext["selector"]["matchLabels"] == {"client": prefix + suffix}
    # prometheus-adapter serves that name
    rules = yaml.safe_load(ADAPTER_RULES.read_text())["externalRules"]
    served = [r for r in rules if re.fullmatch(r["name"]["matches"], ext["name"])]
    assert served and served[0]["name"]["as"] == ext["name"]
    assert ext["name"] in served[0]["seriesQuery"]
    assert "prometheus-adapter-rules.yaml" not in yaml.safe_load(
        (K8S / "kustomization.yaml").read_text())["resources"]


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_k8s_disruption_budgets_and_services_select_pods():
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for d in _of_kind("Deployment")}
    covered = set()
    for pdb in _of_kind("PodDisruptionBudget"):
        hit = {n for n, labels in pods.items() if _selects(pdb["spec"]["selector"], labels)}
        assert len(hit) == 1, f"PDB {pdb['metadata']['name']} selects {hit}"
        covered |= hit
    assert {"outdial-ingress", _dialer()["metadata"]["name"]} <= covered
    for svc in _of_kind("Service"):
        hit = [d for d in _of_kind("Deployment")
               if _selects({"matchLabels": svc["spec"]["selector"]},
                           d["spec"]["template"]["metadata"]["labels"])]
        assert len(hit) == 1, f"Service {svc['metadata']['name']} selects {len(hit)} Deployments"
        container = hit[0]["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports or p["targetPort"] in ports.values(), p
    scraped = {d["metadata"]["name"] for d in _of_kind("Deployment")
               if d["spec"]["template"]["metadata"].get("annotations", {})
               .get("prometheus.io/scrape") == "true"}
    assert scraped == set(pods)
    metric_ports = {svc["spec"]["selector"]["app.kubernetes.io/component"]
                    for svc in _of_kind("Service") for p in svc["spec"]["ports"] if p["name"] == "metrics"}
    assert metric_ports == {"ingress", "scheduler", "dialer", "outcome"}


def test_k8s_job_runs_what_make_run_runs():
    [job] = _of_kind("Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    want = [c for c in run_sh_commands() if _verb(c) not in K8S_JOB_SKIPS]
    check_same_commands(outdialctl_commands(script), want, "the migration Job")


# -------------------------------------------------------------------- Dockerfile


@functools.lru_cache(maxsize=None)
def dockerfile_stages() -> list[dict]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, args = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            stages.append({"image": m.group(1), "name": m.group(2), "instructions": []})
        else:
            stages[-1]["instructions"].append((instr, " ".join(args.split())))
    return stages


def _apt_packages(stage: dict) -> list[str]:
    pkgs = []
    for instr, args in stage["instructions"]:
        if instr != "RUN":
            continue
        for m in re.finditer(r"apt-get install ([^&;]*)", args):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


@functools.lru_cache(maxsize=None)
def dpkg_db() -> tuple[dict, dict, set]:
    """Installed packages: name -> dependency groups; virtual -> providers; essential."""
    p = _run(["dpkg-query", "-W", "-f",
              "${Package}\t${Essential}\t${Provides}\t${Pre-Depends}\t${Depends}\t${db:Status-Status}\n"])
    deps, provides, essential = {}, {}, set()
    for line in p.stdout.splitlines():
        name, ess, prov, pre, dep, status = line.split("\t")
        if status != "installed":
            continue
        groups = [g.strip() for g in f"{pre},{dep}".split(",") if g.strip()]
        deps.setdefault(name, []).extend(groups)
        for v in prov.split(","):
            if v.strip():
                provides.setdefault(v.split()[0].strip(), []).append(name)
        if ess == "yes":
            essential.add(name)
    return deps, provides, essential


def dep_closure(pkgs) -> set[str]:
    """What apt installs with pkgs (--no-install-recommends), as far as this
    host's dpkg database (Debian 12 too) knows it: of alternatives the first
    installed one."""
    deps, provides, _ = dpkg_db()
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        for group in deps.get(p, []):
            for alt in group.split("|"):
                name = alt.split()[0].split(":")[0]
                pick = name if name in deps else next(iter(provides.get(name, [])), None)
                if pick:
                    todo.append(pick)
                    break
    return seen


@functools.lru_cache(maxsize=None)
def base_image_packages() -> frozenset[str]:
    """debian:bookworm-slim: the essential packages and apt, with their dependencies."""
    return frozenset(dep_closure(dpkg_db()[2] | {"apt"}))


def packages_of(paths: list[str]) -> dict[str, str]:
    """path -> Debian package, by dpkg -S (also under /usr and resolved)."""
    cands = {}
    for path in paths:
        real = os.path.realpath(path)
        for c in (path, real):
            cands.setdefault(c, path)
            alt = c[4:] if c.startswith("/usr/") else "/usr" + c
            cands.setdefault(alt, path)
    out = _run(["dpkg", "-S", *cands]).stdout
    found = {}
    for line in out.splitlines():
        if line.startswith("diversion "):
            continue
        pkgs, _, path = line.partition(": ")
        if path in cands:
            found.setdefault(cands[path], pkgs.split(",")[0].strip().split(":")[0])
    return found


def _needs_debian_12():
    try:
        ok = Path("/etc/debian_version").read_text().startswith("12")
    except OSError:
        ok = False
    if not ok or not shutil.which("dpkg"):
        pytest.skip("the library -> package mapping needs a Debian 12 host (dpkg)")


def test_dockerfile_stages():
    stages = dockerfile_stages()
    assert [s["image"] for s in stages] == ["debian:bookworm", "debian:bookworm-slim"]
    instrs = [i for s in stages for i, _ in s["instructions"]]
    assert "ENTRYPOINT" not in instrs, "the command, not an entrypoint, chooses the program"
    runtime = stages[-1]
    assert _dockerfile_uid() != 0
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for i, a in runtime["instructions"] if i == "ENV")))
    assert env["OUTDIAL_HTTP_HOST"] == "0.0.0.0"
    for var in env:
        assert any(var in config_names(b) for b in BINARIES), f"ENV {var}: no program reads it"
    dests = [a.split()[-1] for i, a in runtime["instructions"] if i == "COPY"]
    for var in ("OUTDIAL_OPENAPI_PATH", "OUTDIAL_CONSOLE_DIR", "OUTDIAL_SQL_DIR"):
        assert env[var] in dests, f"{var}={env[var]} is not where a COPY puts files"
    # the binaries of the build stage, all five, into /usr/local/bin
    build_ninja = " ".join(a for i, a in stages[0]["instructions"] if i == "RUN")
    [copy_bins] = [a for i, a in runtime["instructions"] if i == "COPY" and a.startswith("--from=")]
    words = copy_bins.split()
    assert words[-1] == "/usr/local/bin/"
    assert {Path(w).name for w in words[1:-1]} == set(BINARIES)
    for b in BINARIES:
        assert re.search(rf"ninja .*\b{b}\b", build_ninja), f"the build stage does not build {b}"


def _dockerignored(path: str) -> bool:
    pats = [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    parts = Path(path).parts
    return any(p.strip("/") in {"/".join(parts[:i]) for i in range(1, len(parts) + 1)} for p in pats)


def test_dockerfile_copies_files_that_exist():
    for stage in dockerfile_stages():
        for instr, args in stage["instructions"]:
            if instr != "COPY" or args.startswith("--from="):
                continue
            for src in args.split()[:-1]:
                assert (REPO / src).exists(), f"COPY {src}: not in the repository"
                assert not _dockerignored(src), f"COPY {src}: excluded by .dockerignore"
    for p in ("build", ".outdial", ".git"):
        assert _dockerignored(p), f".dockerignore does not exclude {p}"


def test_dockerfile_build_stage_copies_what_cmake_reads():
    """Files the copied CMakeLists.txt name outside the copied folders
    (${CMAKE_SOURCE_DIR}/...) are copied too: configure fails without them."""
    build = dockerfile_stages()[0]
    copied = [src for instr, args in build["instructions"] if instr == "COPY"
              for src in args.split()[:-1]]

    def inside(path: str) -> bool:
        return any(path == c or path.startswith(c.rstrip("/") + "/") for c in copied)

    lists = [REPO / "CMakeLists.txt"] + [f for c in copied if (REPO / c).is_dir()
                                          for f in (REPO / c).rglob("CMakeLists.txt")]
    missing = set()
    for f in lists:
        for path in re.findall(r"\$\{CMAKE_SOURCE_DIR\}/([^\s)*]+)(?=[\s)])", f.read_text()):
            if not inside(path):
                missing.add(f"{path} (named in {f.relative_to(REPO)})")
    assert not missing, f"the build stage does not COPY {sorted(missing)}"


def test_dockerfile_build_stage_has_what_the_build_needs():
    _needs_debian_12()
    build = _apt_packages(dockerfile_stages()[0])
    deps_sh = DEPS_SH.read_text()
    pkgs_sh = re.search(r"^PKGS=\((.*?)^\)", deps_sh, re.M | re.S).group(1)
    local = set(re.sub(r"#.*", "", pkgs_sh).split())
    assert set(build) <= local, f"not in deps.sh: {set(build) - local}"
    # each pkg-config module of CMakeLists.txt, libphonenumber's headers, and
    # the time-zone data libs/phone reads at build time
    cmake = (REPO / "CMakeLists.txt").read_text()
    modules = [m for g in re.findall(r"IMPORTED_TARGET ([^)]+)\)", cmake) for m in g.split()]
    files = []
    for mod in modules:
        d = _run(["pkg-config", "--variable=pcfiledir", mod]).stdout.strip()
        assert d, f"pkg-config knows no {mod}"
        files.append(f"{d}/{mod}.pc")
    files.append("/usr/include/phonenumbers/phonenumberutil.h")
    phone = (REPO / "libs" / "phone" / "CMakeLists.txt").read_text()
    files.append(re.search(r'set\(OD_PHONE_TZ_DATA "([^"]+)"', phone).group(1))
    owners = packages_of(files)
    have = dep_closure(build)
    missing = {f: owners.get(f) for f in files if owners.get(f) not in have}
    assert not missing, f"the build stage lacks the packages of {missing}"


def _ldd(binary: Path) -> dict[str, str]:
    p = _run(["ldd", str(binary)])
    assert p.returncode == 0, p.stderr
    return dict(re.findall(r"^\s*(\S+) => (/\S+)", p.stdout, re.M))


def test_dockerfile_runtime_packages_cover_the_libraries():
    _needs_debian_12()
    runtime = _apt_packages(dockerfile_stages()[-1])
    deps, _, _ = dpkg_db()
    for p in runtime:
        known = p in deps or _run(["apt-cache", "show", "--no-all-versions", p]).returncode == 0
        assert known, f"runtime package {p}: no such Debian package"
    libs, direct = {}, set()
    for b in BINARIES:
        found = _ldd(BIN_DIR / b)
        libs.update(found)
        dyn = _run(["readelf", "-d", str(BIN_DIR / b)]).stdout
        direct |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn))
    libs = {k: v for k, v in libs.items() if not SANITIZER_LIBS.match(k)}
    direct = {n for n in direct if not SANITIZER_LIBS.match(n)}
    owner = packages_of(sorted(libs.values()))
    unmapped = set(libs.values()) - set(owner)
    assert not unmapped, f"no package owns {unmapped}"
    base = base_image_packages()
    # what a binary links itself is listed by name (unless the base image has it) ...
    direct_pkgs = {owner[libs[n]] for n in direct}
    unlisted = direct_pkgs - set(runtime) - base
    assert not unlisted, f"runtime stage lacks {unlisted} (linked directly)"
    # ... and everything ldd loads arrives with the listed packages
    have = dep_closure(runtime) | base
    missing = {lib: pkg for lib, pkg in owner.items() if pkg not in have}
    assert not missing, f"runtime stage lacks the packages of {missing}"
    for pkg in ("ca-certificates", "curl"):
        assert pkg in runtime, pkg


def test_dockerfile_without_tzdata_needs_no_local_time():
    if "tzdata" in _apt_packages(dockerfile_stages()[-1]):
        pytest.skip("the image has tzdata")
    for b in BINARIES:
        syms = _run(["nm", "-D", "--undefined-only", str(BIN_DIR / b)]).stdout
        used = {s.split("@")[0] for s in re.findall(r"\bU (\S+)", syms)} & LOCAL_TIME_FUNCS
        assert not used, f"{b} calls {used}: add tzdata to the runtime stage"


def test_dockerfile_build_check():
    docker = shutil.which("docker")
    if not docker or "--check" not in _run([docker, "build", "--help"]).stdout:
        pytest.skip("this docker client has no `docker build --check` (BuildKit)")
    p = _run([docker, "build", "--check", "-f", str(DOCKERFILE), str(REPO)])
    assert p.returncode == 0, p.stdout + p.stderr
