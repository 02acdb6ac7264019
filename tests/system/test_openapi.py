"""proto/openapi.yaml is a valid OpenAPI document and lists every route of ingress.

Needs no infrastructure: it reads the files only. The route check parses the
`routes[]` table of services/ingress/ingress.c, so adding a route there without
documenting it fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "proto" / "openapi.yaml"
INGRESS = ROOT / "services" / "ingress" / "ingress.c"

# {"POST", "/v1/calls", OD_SCOPE_TRIGGER, route_create_call},
ROUTE_RE = re.compile(r'\{\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"\s*,\s*(OD_SCOPE_\w+)\s*,')
# od_http_route(svc->http, "GET", "/v1/openapi.yaml", on_openapi, in);
EXTRA_ROUTE_RE = re.compile(r'od_http_route\(\s*[^,]+,\s*"([A-Z]+)"\s*,\s*"(/[^"]*)"')

SCOPES = {
    "OD_SCOPE_TRIGGER": "outbound:trigger",
    "OD_SCOPE_READ": "sessions:read",
    "OD_SCOPE_WEBHOOKS": "webhooks:manage",
    "OD_SCOPE_DNC": "dnc:manage",
    "OD_SCOPE_ADMIN": "admin",
}


def _spec(same_params: bool = True) -> dict:
    """The document; with same_params, its paths' parameters all named {id},
    as the routes table has them ({})."""
    yaml = pytest.importorskip("yaml")
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    if same_params:
        spec["paths"] = {re.sub(r"\{[^}]+\}", "{id}", p): v for p, v in spec["paths"].items()}
    return spec


def _routes() -> list[tuple[str, str, str]]:
    """(method, OpenAPI path, OD_SCOPE_*) of the routes table in ingress.c."""
    src = INGRESS.read_text(encoding="utf-8")
    table = re.search(r"static const route_t routes\[\] = \{(.*?)\n\};", src, re.S)
    assert table, "routes[] table not found in services/ingress/ingress.c"
    routes = [(m, p.replace("{}", "{id}"), s) for m, p, s in ROUTE_RE.findall(table.group(1))]
    assert routes, "no routes parsed from the routes[] table"
    return routes


def test_openapi_document_is_valid():
    validator = pytest.importorskip("openapi_spec_validator")
    spec = _spec(same_params=False)
    assert spec["openapi"].startswith("3.1")
    validator.validate(spec)


def test_every_ingress_route_is_documented():
    paths = _spec()["paths"]
    missing = [f"{m} {p}" for m, p, _ in _routes() if m.lower() not in paths.get(p, {})]
    assert not missing, f"routes in ingress.c missing from proto/openapi.yaml: {missing}"


def test_unauthenticated_ingress_routes_are_documented():
    src = INGRESS.read_text(encoding="utf-8")
    paths = _spec()["paths"]
    extra = [(m, p) for m, p in EXTRA_ROUTE_RE.findall(src)]
    assert ("GET", "/v1/openapi.yaml") in extra
    for method, path in extra + [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")]:
        op = paths.get(path, {}).get(method.lower())
        assert op is not None, f"{method} {path} missing from proto/openapi.yaml"
        assert op.get("security") == [], f"{method} {path} needs no authentication"


def test_documented_scopes_match_the_code():
    paths = _spec()["paths"]
    for method, path, scope in _routes():
        op = paths[path][method.lower()]
        want = SCOPES[scope]
        assert op.get("x-required-scope") == want, f"{method} {path}: x-required-scope should be {want}"
        assert f"Required scope: `{want}`" in op.get("description", ""), f"{method} {path}: scope not in description"


def test_no_undocumented_api_paths():
    """The document describes what exists: no /v1 operation without a route."""
    documented = {
        (m.upper(), p)
        for p, ops in _spec()["paths"].items()
        for m in ops
        if m in {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    }
    src = INGRESS.read_text(encoding="utf-8")
    served = {(m, p) for m, p, _ in _routes()} | set(EXTRA_ROUTE_RE.findall(src))
    served |= {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}
    assert documented <= served, f"documented but not served: {sorted(documented - served)}"
