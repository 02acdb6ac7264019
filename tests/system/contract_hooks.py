"""schemathesis hooks for test_contract.py (loaded by SCHEMATHESIS_HOOKS).

The document says what a valid request looks like; some of it depends on the
project's data, which no JSON Schema can hold: a scenario IDN the project has,
one of its verified caller IDs, a number libphonenumber finds possible, a time
within the next 30 days, a webhook host that resolves, a pace within the
project's, a CSV file that names a `phone` column, a delivery the cursor
points at. schemathesis's config file supplies such values to its fuzzing
phase only; this hook supplies them to every phase, and only to the requests
schemathesis means to be valid (a request it builds to be invalid is sent as
built). schemathesis revalidates a case a hook changed, so a replacement that
broke the schema would be seen as such.

The same holds for what depends on the project's state: an Idempotency-Key
already used with another body (422 idempotency_key_reused, as the IETF
draft asks), the 20 webhook endpoints a project may have, a disclosure turned
off without a reason when the scenario has none stored.

The values come from OUTDIAL_CONTRACT_DATA (JSON): url, key, scenario,
caller_id, phones, webhook_url, pacing.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone
from itertools import count

import requests
import schemathesis

DATA = json.loads(os.environ.get("OUTDIAL_CONTRACT_DATA", "{}"))
_n = count()


def _soon() -> str:
    """A due time the API accepts: a few minutes ahead (not in the past, not beyond 30 days)."""
    return (datetime.now(timezone.utc) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _phone() -> str:
    phones = DATA["phones"]
    return phones[next(_n) % len(phones)]


def _dnc_phones() -> list[str]:
    """Numbers for the DNC list: never the ones calls are placed to (422 phone_on_dnc_list)."""
    return [p[:-2] + "9" + p[-1] for p in DATA["phones"][:2]]


def _csv(phones: list[str] | None = None) -> str:
    phones = phones or DATA["phones"][:2]
    return "phone,name\r\n" + "".join(f"{p},n{i}\r\n" for i, p in enumerate(phones))


# field -> the project's value, for a field that is present (an absent one stays absent)
def _fields(path: str) -> dict:
    out = {
        "scenario": lambda v: DATA["scenario"],
        "caller_id": lambda v: DATA["caller_id"],
        "scheduled_for": lambda v: _soon() if v is not None else v,
        "start_at": lambda v: _soon(),
        "pacing_per_min": lambda v: min(int(v), DATA["pacing"]) if str(v).isdigit() else v,
        "calling_windows": lambda v: '[{"days":"mon-sun","from":"00:00","to":"24:00"}]',
    }
    if path in ("/v1/calls", "/v1/caller-ids"):
        out["phone"] = lambda v: _phone()
    if path == "/v1/dnc":
        out["phones"] = lambda v: _dnc_phones()
    if path.startswith("/v1/webhooks"):
        out["url"] = lambda v: DATA["webhook_url"]
    return out


def _supply(container, fields: dict) -> None:
    if not isinstance(container, dict):
        return
    for name, value_of in fields.items():
        if name in container:
            container[name] = value_of(container[name])


def _idempotency_key(case) -> None:
    """One key per request content: a retry of the same request replays, never a reuse."""
    headers = case.headers or {}
    name = next((h for h in headers if h.lower() == "idempotency-key"), None)
    if name is None:
        return
    content = repr((case.body, sorted((case.query or {}).items()))).encode()
    headers[name] = f"{str(headers[name])[:180]}-{hashlib.sha256(content).hexdigest()[:32]}"


def _webhook_room() -> None:
    """Keep the project under its 20 webhook endpoints (422 webhook_limit_reached)."""
    auth = {"Authorization": f"Bearer {DATA['key']}"}
    hooks = requests.get(f"{DATA['url']}/v1/webhooks", headers=auth, timeout=10).json().get("data", [])
    for h in hooks[:-10] if len(hooks) >= 18 else []:
        requests.delete(f"{DATA['url']}/v1/webhooks/{h['id']}", headers=auth, timeout=10)


@schemathesis.hook
def before_call(ctx, case, kwargs):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return
    path, method = case.operation.path, case.method.upper()
    if path == "/v1/events" and case.headers:
        # a resume point must be an event of the project's from the retention window (else 410);
        # and schemathesis 4.32 sent `Last-Event-ID: 0` as valid, against the parameter's pattern
        for h in [h for h in case.headers if h.lower() == "last-event-id"]:
            del case.headers[h]
    if path == "/v1/webhooks/{id}/deliveries" and isinstance(case.query, dict):
        # a cursor names a delivery of this endpoint's log (any other id: 400)
        case.query.pop("cursor", None)
    if method not in ("POST", "PATCH"):
        return
    fields = _fields(path)
    _supply(case.body, fields)
    if path == "/v1/batches" and method == "POST":
        _supply(case.query, fields)
        query = dict(case.query or {})
        if isinstance(case.body, dict):  # a form: a setting goes either there or in the query
            case.body["file"] = _csv()
            for name in [n for n in query if n in case.body or n == "file_name"]:
                del query[name]
            if "scenario" not in case.body:
                query["scenario"] = DATA["scenario"]
        else:  # text/csv: the settings are query parameters
            case.body = _csv()
            query["scenario"] = DATA["scenario"]
        case.query = query
    if path == "/v1/dnc" and not isinstance(case.body, dict):
        case.body = _csv(_dnc_phones())
    if path == "/v1/scenarios/{idn}" and isinstance(case.body, dict) and case.body.get("disclosure_enabled") is False:
        case.body.setdefault("disclosure_off_reason", "calls to our own staff only")
    if path == "/v1/webhooks" and method == "POST":
        _webhook_room()
    _idempotency_key(case)
