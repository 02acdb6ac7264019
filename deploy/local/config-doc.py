"""Prints the configuration tables of the services as Markdown, from their --help.

    python3 deploy/local/config-doc.py [BUILD_DIR]   # pasted into README.md
"""
import re
import subprocess
import sys
from pathlib import Path

build = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "build")
common = None
for svc in ["ingress", "scheduler", "dialer", "outcome"]:
    out = subprocess.run([str(build / "bin" / f"outdial-{svc}"), "--help"], capture_output=True, text=True,
                         check=True).stdout
    items = re.findall(r"^  (OUTDIAL_\w+) \((\w+), default: (.*)\)\n      (.*)$", out, re.M)
    rows = [(n, t, d.strip('"'), h) for n, t, d, h in items]
    if common is None:
        common = [r for r in rows if r[0] in (
            "OUTDIAL_PG_DSN", "OUTDIAL_KAFKA_BROKERS", "OUTDIAL_TOPIC_PREFIX", "OUTDIAL_HTTP_HOST",
            "OUTDIAL_LOG_LEVEL", "OUTDIAL_PG_CONNS", "OUTDIAL_DRAIN_S")]
        print("#### Every service\n\n| variable | type | default | meaning |\n|---|---|---|---|")
        for n, t, d, h in common:
            print(f"| `{n}` | {t} | `{d}` | {h} |")
        print()
    names = {r[0] for r in common}
    print(f"#### outdial-{svc}\n\n| variable | type | default | meaning |\n|---|---|---|---|")
    for n, t, d, h in rows:
        if n not in names:
            print(f"| `{n}` | {t} | `{d}` | {h} |")
    print()
