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


def _strict_yaml_load(text: str):
    """YAML -> Python like yaml.safe_load, but a mapping that repeats a key is
    an error (YAML 1.2 forbids it; PyYAML silently keeps the last one, strict
    loaders such as ruamel's, used by openapi-python-client, refuse the file)."""
    yaml = pytest.importorskip("yaml")

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass


def test_openapi_document_has_no_duplicate_keys():
    """Regression (issue 18): CallEvent was defined twice, so strict loaders and
    client generators refused the document, and PyYAML made Call.events[]
    validate against the SSE shape."""
    spec = _strict_yaml_load(SPEC.read_text(encoding="utf-8"))
    assert spec == _spec(same_params=False)


def test_strict_loader_rejects_duplicate_keys():
    yaml = pytest.importorskip("yaml")
    with pytest.raises(yaml.YAMLError, match="duplicate key 'CallEvent'"):
        _strict_yaml_load("schemas:\n  CallEvent: {type: object}\n  CallEvent: {type: string}\n")


def test_call_events_and_stream_events_have_their_own_schemas():
    schemas = _spec(same_params=False)["components"]["schemas"]
    assert schemas["Call"]["properties"]["events"]["items"] == {"$ref": "#/components/schemas/CallEvent"}
    assert set(schemas["CallEvent"]["required"]) == {"status", "at", "detail"}
    assert "call_id" in schemas["CallStreamEvent"]["required"]
    sse = _spec()["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"]
    assert sse["properties"]["data"]["contentSchema"] == {"$ref": "#/components/schemas/CallStreamEvent"}


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


# Where the ingress and the SQL functions name a problem's `code`: the calls
# that answer a problem, the builders of field errors, the tables of refusals,
# the libraries' error codes, and the SQL functions' {"status", "code"} answers.
CODE_SOURCES = ("services/ingress/*.c", "libs/http/src/*.c", "libs/phone/src/*.c", "libs/csv/src/*.c",
                "libs/window/src/*.c", "libs/core/src/rfc3339.c", "libs/call/src/retry.c")
C_CODE_RES = [
    # od_http_problem(req, 405, "method_not_allowed", ...), fail(out, 422, "csv_empty", ...) ...
    r'(?:od_http_problem(?:_field)?|ingress__reply_problem|field_problem|reply_field|fail)\(\s*[^,()]+,\s*\d+,\s*"([a-z0-9_]+)"',
    # ingress__err_add(&e, "url", "invalid_webhook_url", ...), add(&e, "phone", "missing_field", ...)
    r'\b(?:ingress__err_add|add)\(\s*&?\w+,\s*[^,]+,\s*"([a-z0-9_]+)"',
    # {"reused", "idempotency_key_reused", 422, ...} (refusals tables)
    r'\{\s*"[a-z0-9_]+",\s*"([a-z0-9_]+)",\s*\d{3},',
    # return fail(out, errcode, "phone_not_possible"); return "csv_not_utf8";
    r'return fail\(\w+,\s*\w+,\s*"([a-z0-9_]+)"', r'return "(csv_[a-z0-9_]+)"',
    # (od_retry_error_t){"retry_on", "invalid_retry_on", ...}
    r'\(od_retry_error_t\)\{\s*"[a-z0-9_]+",\s*"([a-z0-9_]+)"',
    # text_field(&e, root, args, "disclosure", MAX, "invalid_disclosure", ...)
    r'\btext_field\([^;]*?"(invalid_[a-z0-9_]+)"',
]
# a statement that sets a code: every literal in it is one
# (*code = "invalid_json"; code = status == 413 ? "body_too_large" : ...; d.error ? d.error : "no_numbers")
C_CODE_STATEMENT_RE = r'(?:\bcode|\*errcode|\bd(?:\.|->)error)\s*=\s*([^;]*);'
# od_csv_code(OD_CSV_EABORT): a callback stopped the parse; both parsers handle it themselves
NOT_ANSWERED = {"csv_aborted"}


def _answered_codes() -> set[str]:
    c = "".join(p.read_text(encoding="utf-8") for g in CODE_SOURCES for p in sorted(ROOT.glob(g)))
    sql = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "proto" / "sql").glob("*.sql")))
    codes = {m for r in C_CODE_RES for m in re.findall(r, c, re.M)}
    for stmt in re.findall(C_CODE_STATEMENT_RE, c):
        if "json_object_get" not in stmt and "%s" not in stmt:  # a code read from SQL's answer; a format
            codes |= set(re.findall(r'"([a-z0-9_]+)"', stmt))
    codes |= set(re.findall(r"'code',\s*'([a-z0-9_]+)'", sql))
    return codes - NOT_ANSWERED


def test_every_problem_code_is_in_the_enum():
    """Every `code` the ingress or an SQL function can answer is one the
    document lists (schemathesis found invalid_spend_cap, caller_id_exists,
    invalid_opt_out_script ... answered but not documented: issue 18)."""
    code = _spec(same_params=False)["components"]["schemas"]["Problem"]["properties"]["code"]
    answered = _answered_codes()
    assert {"invalid_spend_cap", "caller_id_exists", "invalid_opt_out_script", "method_not_allowed",
            "recording_deleted", "too_many_streams", "csv_not_utf8"} <= answered, "the code scan found too little"
    missing = sorted(answered - set(code["enum"]))
    assert not missing, f"problem codes answered but missing from Problem.code's enum: {missing}"
    undescribed = sorted(c for c in code["enum"] if f"`{c}`" not in code["description"])
    assert not undescribed, f"Problem.code's description does not list: {undescribed}"

