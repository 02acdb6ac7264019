#!/usr/bin/env python3
"""Generates tz_table.c: libphonenumber's prefix -> time zones map as a
sorted C table, at build time, from the copy Debian ships.

    gen_tz_table.py DATA0_PY OUT_C [VERSION]

DATA0_PY is `phonenumbers/tzdata/data0.py` of Debian's python3-phonenumbers
(the same libphonenumber release as libphonenumber-dev; the C++ library has
no time-zone mapper, the Java and Python ones carry this data). The file is
read as text and its dict literal evaluated with ast.literal_eval: nothing
of the package is imported or run. Nothing of it is kept in the repository.

Output: od_phone__tz_table[], sorted by prefix (strcmp order), each entry a
prefix of digits (country calling code + start of the national number) and
its zones joined by ",", sorted. Fails (exit 1) on anything unexpected.
"""
import ast
import re
import sys

ZONE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")


def load(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "data"):
            return ast.literal_eval(node.value)
    raise ValueError(f"{path}: no 'data = {{...}}' assignment")


def main(argv):
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    src, out = argv[1], argv[2]
    version = argv[3] if len(argv) == 4 else "unknown"
    data = load(src)
    if not isinstance(data, dict) or len(data) < 100:
        raise ValueError(f"{src}: expected a dict of prefixes, got {type(data).__name__} of {len(data)}")
    rows = []
    for prefix, zones in data.items():
        if not (isinstance(prefix, str) and prefix.isdigit() and 1 <= len(prefix) <= 15 and prefix[0] != "0"):
            raise ValueError(f"{src}: bad prefix {prefix!r}")
        if not (isinstance(zones, tuple) and zones and all(isinstance(z, str) and ZONE_RE.match(z) for z in zones)):
            raise ValueError(f"{src}: bad zones for {prefix}: {zones!r}")
        rows.append((prefix, ",".join(sorted(set(zones)))))
    rows.sort(key=lambda r: r[0].encode())
    longest = max(len(p) for p, _ in rows)
    with open(out, "w", encoding="ascii") as f:
        f.write("/* Generated at build time by libs/phone/gen_tz_table.py from\n"
                f" * {src}\n"
                f" * (Debian python3-phonenumbers {version}; libphonenumber, Apache-2.0). Do not edit. */\n"
                '#include "tz_table.h"\n\n'
                f'const char od_phone__tz_version[] = "{version}";\n'
                f"const size_t od_phone__tz_longest = {longest};\n"
                f"const size_t od_phone__tz_count = {len(rows)};\n"
                "const od_phone__tz_entry_t od_phone__tz_table[] = {\n")
        for prefix, zones in rows:
            f.write(f'    {{"{prefix}", "{zones}"}},\n')
        f.write("};\n")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (OSError, ValueError, SyntaxError) as e:
        print(f"gen_tz_table: {e}", file=sys.stderr)
        sys.exit(1)
