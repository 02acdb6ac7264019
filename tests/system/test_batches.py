"""CSV batches (docs/batches.md), black-box: tricky CSV forms, every file-level
and settings error, per-row rejections, counts that always add up,
results.csv (quoting, formula neutralisation, call columns), pause / resume /
cancel, per-batch pacing inside the project's, idempotent re-upload, a dialer
killed mid-batch, listing and scopes."""

from __future__ import annotations

import collections
import random
import re
import threading
import time
import uuid

import pytest

from harness import Api, wait_until
from helpers_batches import (BOM, FINAL_KEYS, RESULT_COLUMNS, assert_batch_shape, assert_counts_add_up,
                             assert_answered, assert_created, assert_no_batch_created, batch_calls, csv_text, db_dials,
                             dialed_count, get_batch, list_batches, neutralised, phones, results_cell,
                             results_csv, row_errors, spaced, upload, wait_batch, wait_validated)
from helpers_pipeline import (NO_LIMITS, SCENARIO, SIM, assert_accepted, assert_never_dialed_twice, assert_problem,
                              assert_sim_results, db_calls, idem_key, in_seconds, parse_ts, phone)

PACE = 600  # project and batch pacing where pacing is not the subject: 10 calls a second


def _project(system, pacing: int = PACE, **kw):
    return system.new_project(pacing=pacing, **NO_LIMITS, **kw)


def _calls_by_phone(api, bid) -> dict[str, dict]:
    calls = batch_calls(api, bid)
    by_phone = {c["phone"]: c for c in calls}
    assert len(by_phone) == len(calls), f"two calls of one batch to one number: {[c['phone'] for c in calls]}"
    for c in calls:
        assert c["batch_id"] == bid, c
    return by_phone


# ============================================================ 1. CSV forms


def _case_quoted(P):
    body = ("phone,name,note\r\n"
            f'{P[0]},"Doe, John","He said ""hi"""\r\n'
            f'"{P[1]}","multi\r\nline","lf\nonly"\r\n'
            f'{P[2]},"","""quoted"""\r\n')
    return dict(body=body, multipart=False, columns=["phone", "name", "note"], rows=[
        (P[0], {"name": "Doe, John", "note": 'He said "hi"'}),
        (P[1], {"name": "multi\r\nline", "note": "lf\nonly"}),
        (P[2], {"name": "", "note": '"quoted"'}),
    ])


def _case_quoted_multipart(P):
    c = _case_quoted(P)
    c["multipart"] = True
    return c


def _case_lf_no_final_eol(P):
    return dict(body=f"Phone,city\n{P[0]},Madrid\n{P[1]},Sevilla", multipart=True, filename="list-lf.csv",
                columns=["Phone", "city"], rows=[(P[0], {"city": "Madrid"}), (P[1], {"city": "Sevilla"})])


def _case_crlf(P):
    return dict(body=f"phone,city\r\n{P[0]},Madrid\r\n{P[1]},Sevilla\r\n", multipart=False,
                columns=["phone", "city"], rows=[(P[0], {"city": "Madrid"}), (P[1], {"city": "Sevilla"})])


def _case_mixed_eol(P):
    return dict(body=f"phone,a\r\n{P[0]},x\n{P[1]},y\r\n{P[2]},z\n", multipart=False,
                content_type="text/csv; charset=utf-8",
                columns=["phone", "a"], rows=[(P[0], {"a": "x"}), (P[1], {"a": "y"}), (P[2], {"a": "z"})])


def _case_bom_header_case(P):
    return dict(body=BOM + f"  PHONE  , City ,zip\r\n{P[0]},Bilbao,48001\r\n".encode(), multipart=True,
                columns=["PHONE", "City", "zip"], rows=[(P[0], {"City": "Bilbao", "zip": "48001"})])


def _case_bom_quoted_header(P):
    return dict(body=BOM + f'"phone","na,me"\n{P[0]},v\n'.encode(), multipart=False,
                columns=["phone", "na,me"], rows=[(P[0], {"na,me": "v"})])


def _case_blank_lines(P):
    # blank and all-empty lines are skipped and not counted: "bad" is row 3
    body = ("\r\n"
            "phone,a,b,c\r\n"
            "\r\n"
            ",,,\r\n"
            f"{P[0]},1,2,3\n"
            "\n"
            ",,\n"
            f"{P[1]},,,\n"
            ",,,\r\n"
            "bad,x,y,z\r\n"
            "\r\n"
            f"{P[2]},x,y,z\r\n"
            ",,,")
    return dict(body=body, multipart=False, columns=["phone", "a", "b", "c"], errors=[(3, "invalid_phone")],
                rows=[(P[0], {"a": "1", "b": "2", "c": "3"}), (P[1], {"a": "", "b": "", "c": ""}),
                      (P[2], {"a": "x", "b": "y", "c": "z"})])


def _case_metadata_strings(P):
    body = ("phone,code,amount,active,empty,unicode\n"
            f"{P[0]},007,1.50,true,,Ñandú 📞\n"
            f"{P[1]},42\n")  # fewer fields: the missing cells are empty
    return dict(body=body, multipart=True, columns=["phone", "code", "amount", "active", "empty", "unicode"],
                rows=[(P[0], {"code": "007", "amount": "1.50", "active": "true", "empty": "", "unicode": "Ñandú 📞"}),
                      (P[1], {"code": "42", "amount": "", "active": "", "empty": "", "unicode": ""})])


def _case_phone_column_and_separators(P):
    body = ("name,Phone,city\r\n"
            f'Ana," {spaced(P[0])} ",Vigo\r\n'
            f"Luis,{P[1][:3]} ({P[1][3:6]}) {P[1][6:9]}-{P[1][9:]},Lugo\r\n")
    return dict(body=body, multipart=False, columns=["name", "Phone", "city"],
                rows=[(P[0], {"name": "Ana", "city": "Vigo"}), (P[1], {"name": "Luis", "city": "Lugo"})])


def _case_bare_quote(P):
    return dict(body=f'phone,size\n{P[0]},5" screen\n{P[1]},a"b"c\n', multipart=False, columns=["phone", "size"],
                rows=[(P[0], {"size": '5" screen'}), (P[1], {"size": 'a"b"c'})])


def _case_100_columns(P):
    cols = ["phone"] + [f"c{i}" for i in range(1, 100)]
    body = ",".join(cols) + "\n" + ",".join([P[0]] + [f"v{i}" for i in range(1, 100)]) + "\n"
    return dict(body=body, multipart=True, columns=cols, rows=[(P[0], {f"c{i}": f"v{i}" for i in range(1, 100)})])


CSV_CASES = {
    "quoted_fields_text_csv": _case_quoted,
    "quoted_fields_multipart": _case_quoted_multipart,
    "lf_without_final_eol": _case_lf_no_final_eol,
    "crlf": _case_crlf,
    "mixed_crlf_lf": _case_mixed_eol,
    "bom_and_header_case_and_spaces": _case_bom_header_case,
    "bom_then_quoted_header": _case_bom_quoted_header,
    "blank_and_empty_lines_skipped": _case_blank_lines,
    "metadata_cells_stay_strings": _case_metadata_strings,
    "phone_column_not_first_with_separators": _case_phone_column_and_separators,
    "bare_quote_in_unquoted_field": _case_bare_quote,
    "exactly_100_columns": _case_100_columns,
}


@pytest.fixture(scope="module")
def csv_project(system):
    return _project(system)


@pytest.mark.parametrize("case", list(CSV_CASES))
def test_csv_forms(system, csv_project, case):
    p = csv_project
    c = CSV_CASES[case](phones(range(3)))
    r = upload(p.api, c["body"], multipart=c["multipart"], pacing=PACE, filename=c.get("filename", "contacts.csv"),
               content_type=c.get("content_type", "text/csv"))
    b = assert_created(r)
    errors = c.get("errors", [])
    assert b["columns"] == c["columns"], b["columns"]
    assert (b["total_rows"], b["accepted_rows"], b["rejected_rows"]) == \
        (len(c["rows"]) + len(errors), len(c["rows"]), len(errors)), b
    assert row_errors(b) == errors, b["row_errors"]
    assert b["scenario"] == SCENARIO and b["pacing_per_min"] == PACE, b
    if c["multipart"]:
        assert b["file_name"] == c.get("filename", "contacts.csv"), b["file_name"]
    stable = ("id", "scenario", "pacing_per_min", "start_at", "caller_id", "file_name", "columns", "total_rows",
              "accepted_rows", "rejected_rows", "row_errors", "created_at")
    got = get_batch(p.api, b["id"])
    assert {k: got[k] for k in stable} == {k: b[k] for k in stable}, (got, b)

    by_phone = _calls_by_phone(p.api, b["id"])
    assert sorted(by_phone) == sorted(ph for ph, _ in c["rows"]), "the batch's calls are not the rows' numbers"
    for ph, meta in c["rows"]:
        call = p.api.call(by_phone[ph]["id"])
        assert call["metadata"] == meta, f"row {ph}: metadata {call['metadata']!r}, expected {meta!r}"
        assert all(isinstance(v, str) for v in call["metadata"].values()), call["metadata"]
        assert call["batch_id"] == b["id"] and call["scenario"] == SCENARIO, call
        assert call["caller_id"] == p.caller_id, call


def test_text_csv_file_name_parameter(system, csv_project):
    p = csv_project
    b = assert_created(upload(p.api, f"phone\n{phone(0)}\n", pacing=PACE, file_name="from query.csv"))
    assert b["file_name"] == "from query.csv", b


def test_settings_defaults_and_echo(system):
    """pacing default min(5, project); start_at up to 60 s in the past is fine;
    caller_id: the project's verified one, or the default."""
    p = _project(system, pacing=3)
    b = assert_created(upload(p.api, f"phone\n{phone(0)}\n"))
    assert b["pacing_per_min"] == 3, b
    assert b["caller_id"] == p.caller_id, b
    p2 = _project(system, pacing=600)
    b = assert_created(upload(p2.api, f"phone\n{phone(0)}\n", start_at=in_seconds(-30)))
    assert b["pacing_per_min"] == 5, b
    later = in_seconds(3600)
    b = assert_created(upload(p2.api, f"phone\n{phone(0)}\n", start_at=later, caller_id=p2.caller_id,
                              multipart=True))
    assert b["caller_id"] == p2.caller_id
    assert abs((parse_ts(b["start_at"]) - parse_ts(later)).total_seconds()) < 0.002, (b["start_at"], later)
    assert b["status"] == "scheduled" and b["started_at"] is None and b["finished_at"] is None, b
    assert b["counts"] == {"queued": 1, "dialing": 0, "connected": 0, "completed": 0, "failed": 0, "canceled": 0}
    assert b["success_rate"] is None and b["goal_completion_rate"] is None, b


def test_other_verified_caller_id(system):
    p = _project(system)
    second = f"+1415556{random.randint(1000, 9999)}"
    system.ctl("caller-id", "add", p.id, second, json_out=False)
    b = assert_created(upload(p.api, f"phone\n{phone(0)}\n{phone(1)}\n", pacing=PACE, caller_id=second))
    assert b["caller_id"] == second, b
    calls = batch_calls(p.api, b["id"])
    assert len(calls) == 2 and all(c["caller_id"] == second for c in calls), calls


def test_start_at_in_a_few_seconds(system):
    p = _project(system)
    start = in_seconds(3)
    b = assert_created(upload(p.api, csv_text([["phone"]] + [[x] for x in phones([0, 1, 4])]), pacing=PACE,
                              start_at=start, multipart=True))
    t_start = parse_ts(start).timestamp()
    early = get_batch(p.api, b["id"])
    assert time.time() < t_start - 0.5, "the upload took too long for this test"
    assert early["status"] == "scheduled" and early["started_at"] is None, early
    assert early["counts"]["queued"] == 3, early
    done = wait_batch(p.api, b["id"], timeout=30)
    assert done["status"] == "completed", done
    assert parse_ts(done["started_at"]).timestamp() >= t_start, (done["started_at"], start)
    first_dial = min(t for _, t in db_dials(system, b["id"]))
    assert first_dial >= t_start, f"a call was dialed {t_start - first_dial:.3f} s before start_at"


# ======================================================= 2. file-level errors


@pytest.fixture(scope="module")
def err_project(system):
    return _project(system)


@pytest.fixture(scope="module")
def small_ingress(system):
    """A second ingress with small limits: 64 KiB uploads, 3 data rows."""
    return system.add_service("ingress_small", "outdial-ingress", OUTDIAL_BATCH_MAX_BYTES="65536",
                              OUTDIAL_BATCH_MAX_ROWS="3")


def _file_error_cases():
    P = phones([0, 1, 2])
    many = ["phone"] + [f"c{i}" for i in range(1, 101)]  # 101 columns
    return {
        "empty_body": (b"", 422, "csv_empty", None),
        "bom_only": (BOM, 422, "csv_empty", None),
        "blank_lines_only": (b"\r\n\n\r\n", 422, "csv_empty", None),
        "empty_field_lines_only": (b"\n,,\r\n,\n", 422, "csv_empty", None),
        "bom_then_blank_lines": (BOM + b"\r\n\r\n", 422, "csv_empty", None),
        "header_only": (b"phone,name\r\n", 422, "csv_no_rows", None),
        "header_only_no_eol": (b"phone", 422, "csv_no_rows", None),
        "header_then_blank_lines": (b"phone,name\r\n\r\n,\n\n", 422, "csv_no_rows", None),
        "no_phone_column": (f"tel,name\n{P[0]},x\n".encode(), 422, "csv_no_phone_column", None),
        "phone_number_is_not_phone": (f"phone number,name\n{P[0]},x\n".encode(), 422, "csv_no_phone_column", None),
        "duplicate_column_case": (f"phone,Name, name \n{P[0]},a,b\n".encode(), 422, "csv_duplicate_column", None),
        "duplicate_phone_column": (f"Phone, PHONE\n{P[0]},{P[1]}\n".encode(), 422, "csv_duplicate_column", None),
        "empty_column_name": (f"phone,,name\n{P[0]},a,b\n".encode(), 422, "csv_empty_column_name", None),
        "blank_column_name": (f"phone,   \n{P[0]},a\n".encode(), 422, "csv_empty_column_name", None),
        "not_utf8_ff": (f"phone,name\r\n{P[0]},ok\r\n{P[1]},bad".encode() + b"\xff\r\n", 422, "csv_not_utf8", 3),
        "not_utf8_overlong": (f"phone,name\n{P[0]},".encode() + b"\xc0\xaf\n", 422, "csv_not_utf8", 2),
        "not_utf8_surrogate": (f"phone,name\n{P[0]},".encode() + b"\xed\xa0\x80\n", 422, "csv_not_utf8", 2),
        "not_utf8_truncated": (f"phone,name\n{P[0]},".encode() + b"\xe2\x82", 422, "csv_not_utf8", 2),
        "not_utf8_in_header": (b"phone,n\xffame\n" + f"{P[0]},x\n".encode(), 422, "csv_not_utf8", 1),
        "unbalanced_quote": (f'phone,name\n{P[0]},ok\n{P[1]},"never closed\n{P[2]},x\n'.encode(),
                             422, "csv_unbalanced_quote", 3),
        "text_after_closing_quote": (f'phone,name\n{P[0]},"ab"c\n'.encode(), 422, "csv_unbalanced_quote", 2),
        "over_100_columns_header": ((",".join(many) + "\n" + P[0] + "\n").encode(), 422,
                                    "csv_too_many_columns", None),
        "over_100_columns_in_a_row": ((f"phone,name\n{P[0]},a\n{P[1]}," + ",".join(["x"] * 100) + "\n").encode(),
                                      422, "csv_too_many_columns", None),
    }


FILE_ERROR_CASES = list(_file_error_cases())


@pytest.mark.parametrize("multipart", [False, True], ids=["text_csv", "multipart"])
@pytest.mark.parametrize("case", FILE_ERROR_CASES)
def test_file_level_errors(system, err_project, case, multipart):
    p = err_project
    body, status, code, line = _file_error_cases()[case]
    before = [b["id"] for b in list_batches(p.api, limit=200)["data"]]
    calls_before = system.scalar(f"select count(*) from calls where project_id = '{p.id}'")
    prob = assert_problem(upload(p.api, body, multipart=multipart, pacing=PACE), status, code)
    if line is not None:
        assert re.search(rf"\b{line}\b", prob["detail"]), f"the detail should name line {line}: {prob['detail']!r}"
    assert_no_batch_created(p.api, before)
    assert system.scalar(f"select count(*) from calls where project_id = '{p.id}'") == calls_before


def test_413_over_max_bytes(system, small_ingress):
    p = _project(system)
    api = Api(small_ingress.url, p.key)
    pad = "x" * 1000
    big = "phone,pad\r\n" + "".join(f"{ph},{pad}\r\n" for ph in phones([0] * 80))  # ~83 KB > 64 KiB
    assert_problem(upload(api, big, pacing=PACE), 413, "body_too_large")
    assert_problem(upload(api, big, multipart=True, pacing=PACE), 413, "body_too_large")
    assert list_batches(p.api)["data"] == []
    # under the limit it goes (3 rows of ~15 KB: the row limit of this ingress, metadata under 16 KiB)
    ok = "phone,pad\r\n" + "".join(f"{ph},{'y' * 15000}\r\n" for ph in phones([0, 1, 2]))
    b = assert_created(upload(api, ok, pacing=PACE, start_at=in_seconds(3600)))
    assert (b["accepted_rows"], b["rejected_rows"]) == (3, 0), b


def test_too_many_rows(system, small_ingress):
    p = _project(system)
    api = Api(small_ingress.url, p.key)
    P = phones([0, 1, 2, 3])
    assert_problem(upload(api, "phone\n" + "\n".join(P) + "\n", pacing=PACE), 422, "csv_too_many_rows")
    assert_problem(upload(api, "phone\n" + "\n".join(P[:2] + ["bad", "worse"]) + "\n", multipart=True,
                          pacing=PACE), 422, "csv_too_many_rows")
    assert list_batches(p.api)["data"] == []
    # three rows, blank lines between them (not counted): accepted
    b = assert_created(upload(api, "phone\n\n" + "\n\n".join(P[:3]) + "\n\n", pacing=PACE,
                              start_at=in_seconds(3600)))
    assert b["total_rows"] == 3, b


def test_unsupported_media_type(system, err_project):
    p = err_project
    before = [b["id"] for b in list_batches(p.api, limit=200)["data"]]
    r = p.api.post("/v1/batches", params={"scenario": SCENARIO}, json={"phone": phone(0)})
    assert_problem(r, 415, "unsupported_media_type")
    r = p.api.post("/v1/batches", params={"scenario": SCENARIO}, data=f"phone\n{phone(0)}\n",
                   headers={"Content-Type": "text/plain"})
    assert_problem(r, 415, "unsupported_media_type")
    r = p.api.post("/v1/batches", params={"scenario": SCENARIO}, data=f"phone\n{phone(0)}\n".encode())
    assert "content-type" not in {k.lower() for k in r.request.headers}, r.request.headers
    assert_problem(r, 415, "unsupported_media_type")
    assert_no_batch_created(p.api, before)


def test_invalid_multipart(system, err_project):
    p = err_project
    before = [b["id"] for b in list_batches(p.api, limit=200)["data"]]
    ph = phone(0)
    part = (f'--XyZ\r\nContent-Disposition: form-data; name="scenario"\r\n\r\n{SCENARIO}\r\n'
            f'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.csv"\r\n'
            f'Content-Type: text/csv\r\n\r\nphone\r\n{ph}\r\n')
    bodies = {
        "garbage": ("multipart/form-data; boundary=XyZ", b"this is not multipart at all"),
        "no_closing_boundary": ("multipart/form-data; boundary=XyZ", part.encode()),
        "no_boundary_parameter": ("multipart/form-data", (part + "--XyZ--\r\n").encode()),
    }
    for name, (ctype, body) in bodies.items():
        r = p.api.post("/v1/batches", data=body, headers={"Content-Type": ctype})
        try:
            assert_problem(r, 400, "invalid_multipart")
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
    # the same part, well closed, is accepted (the framing above is what was wrong)
    r = p.api.post("/v1/batches", data=(part + "--XyZ--\r\n").encode(),
                   headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    b = assert_created(r, p.api)
    assert b["file_name"] == "a.csv" and b["accepted_rows"] == 1, b
    assert [x["id"] for x in list_batches(p.api, limit=200)["data"]] == [b["id"]] + before


def test_multipart_without_file_part(system, err_project):
    p = err_project
    before = [b["id"] for b in list_batches(p.api, limit=200)["data"]]
    r = p.api.post("/v1/batches", files={"scenario": (None, SCENARIO), "pacing_per_min": (None, "10")})
    assert_problem(r, 422, "missing_file")
    # a part with another name is not the file
    r = p.api.post("/v1/batches", data={"scenario": SCENARIO},
                   files={"upload": ("a.csv", f"phone\n{phone(0)}\n", "text/csv")})
    assert_problem(r, 422, "missing_file")
    assert_no_batch_created(p.api, before)


SETTINGS_ERRORS = {
    "unknown_scenario": (dict(scenario="no_such_scenario"), "unknown_scenario"),
    "caller_id_not_verified": (dict(caller_id="+12025550123"), "caller_id_not_verified"),
    "pacing_above_project_rate": (dict(pacing=PACE + 1), "pacing_above_project_rate"),
    "pacing_zero": (dict(pacing=0), "invalid_pacing"),
    "pacing_abc": (dict(pacing="abc"), "invalid_pacing"),
    "pacing_negative": (dict(pacing=-5), "invalid_pacing"),
    "pacing_fraction": (dict(pacing="1.5"), "invalid_pacing"),
    "start_at_in_past": (dict(start_at="PAST"), "start_at_in_past"),
    "start_at_too_far": (dict(start_at="FAR"), "start_at_too_far"),
    "start_at_not_a_time": (dict(start_at="tomorrow"), "invalid_datetime"),
    "start_at_bad_date": (dict(start_at="2026-02-30T10:00:00Z"), "invalid_datetime"),
}


@pytest.mark.parametrize("multipart", [False, True], ids=["text_csv", "multipart"])
@pytest.mark.parametrize("case", list(SETTINGS_ERRORS))
def test_settings_errors(system, err_project, case, multipart):
    p = err_project
    settings, code = SETTINGS_ERRORS[case]
    settings = dict(settings)
    if settings.get("start_at") == "PAST":
        settings["start_at"] = in_seconds(-300)
    elif settings.get("start_at") == "FAR":
        settings["start_at"] = in_seconds(31 * 86400)
    settings.setdefault("pacing", PACE)
    before = [b["id"] for b in list_batches(p.api, limit=200)["data"]]
    r = upload(p.api, f"phone,name\r\n{phone(0)},x\r\n", multipart=multipart, **settings)
    assert_problem(r, 422, code)
    assert_no_batch_created(p.api, before)


def test_missing_scenario_is_422(system, err_project):
    """`scenario` is required; the contract names no code for its absence."""
    p = err_project
    before = [b["id"] for b in list_batches(p.api, limit=200)["data"]]
    for multipart in (False, True):
        r = upload(p.api, f"phone\n{phone(0)}\n", multipart=multipart, scenario=None, pacing=PACE)
        assert_problem(r, 422)
    assert_no_batch_created(p.api, before)


# ======================================================= 3. per-row rejections


def test_row_rejections(system):
    p = _project(system)
    P = phones([0, 1, 5, 7, 4, 2, 0, 3])
    dnc, dnc2 = P[6], P[7]
    system.psql(f"insert into dnc (project_id, phone) values ('{p.id}', '{dnc}'), ('{p.id}', '{dnc2}')")
    rows = [
        ["phone", "name"],
        [P[0], "r1 ok"],                       # 1
        ["12345", "r2 no plus"],               # 2 invalid_phone
        [P[1], "r3 ok"],                       # 3
        [spaced(P[0]), "r4 same number"],      # 4 duplicate_phone (same after normalising)
        [dnc, "r5 dnc"],                       # 5 phone_on_dnc_list
        [P[4], "r6", "one too many"],          # 6 too_many_fields
        ["", "r7 empty phone"],                # 7 invalid_phone
        ["+3461234", "r8 too short"],          # 8 invalid_phone
        [P[2]],                                # 9 ok: fewer fields are fine
        [P[5], "z" * 17000],                   # 10 metadata_too_large
        ["=cmd|' /C calc'!A0", "r11"],         # 11 invalid_phone
        [P[3], "r12 ok"],                      # 12
        [P[1], "r13 again"],                   # 13 duplicate_phone
        [spaced(dnc2), "r14 dnc, typed"],      # 14 phone_on_dnc_list (normalised first)
    ]
    b = assert_created(upload(p.api, csv_text(rows), pacing=PACE, multipart=True))
    expected_errors = [(2, "invalid_phone"), (4, "duplicate_phone"), (5, "phone_on_dnc_list"),
                       (6, "too_many_fields"), (7, "invalid_phone"), (8, "invalid_phone"),
                       (10, "metadata_too_large"), (11, "invalid_phone"), (13, "duplicate_phone"),
                       (14, "phone_on_dnc_list")]
    assert row_errors(b) == expected_errors, b["row_errors"]
    assert (b["total_rows"], b["accepted_rows"], b["rejected_rows"]) == (14, 4, 10), b

    done = wait_batch(p.api, b["id"], timeout=60)
    assert done["status"] == "completed", done
    assert row_errors(done) == expected_errors
    fs = {k: v for k, v in done["final_states"].items() if v}
    assert fs == {"completed": 2, "busy": 1, "invalid_number": 1}, done["final_states"]
    by_phone = _calls_by_phone(p.api, b["id"])
    assert sorted(by_phone) == sorted([P[0], P[1], P[2], P[3]])
    assert by_phone[P[2]]["metadata"] == {"name": ""}, by_phone[P[2]]
    assert by_phone[P[0]]["metadata"] == {"name": "r1 ok"}, by_phone[P[0]]
    # the DNC number and the rejected rows were never dialed
    dialed = {d[2] for d in system.dials()}
    assert not {dnc, dnc2, P[4], P[5]} & dialed


def test_row_errors_first_100(system):
    p = _project(system)
    rows = [["phone"]] + [[f"bad{i}"] for i in range(105)] + [[phone(0)]]
    b = assert_created(upload(p.api, csv_text(rows, eol="\n"), pacing=PACE))
    assert (b["total_rows"], b["accepted_rows"], b["rejected_rows"]) == (106, 1, 105), b
    assert row_errors(b) == [(i, "invalid_phone") for i in range(1, 101)], b["row_errors"][-3:]


# ================================================= 4. counts always add up


def _expected_finals(digits):
    fs = collections.Counter(SIM[d][1] for d in digits)
    return {k: fs.get(k, 0) for k in FINAL_KEYS}


def test_counts_add_up_while_running(system):
    p = _project(system)
    # 24 completed (15 success of which 9 goal) + 6 of each failing digit: rates 0.625 / 0.375
    digits = [0] * 9 + [1] * 6 + [2] * 3 + [3] * 6 + [4, 5, 6, 7, 8, 9] * 6
    assert len(digits) == 60
    random.shuffle(digits)
    P = phones(digits)
    b = assert_created(upload(p.api, csv_text([["phone", "i"]] + [[ph, str(i)] for i, ph in enumerate(P)]),
                              pacing=PACE))
    polls, mid = 0, 0
    statuses = []
    last = b
    deadline = time.monotonic() + 60
    while True:
        last = get_batch(p.api, b["id"])
        polls += 1
        assert_counts_add_up(last)
        assert last["accepted_rows"] == 60
        statuses.append(last["status"])
        c = last["counts"]
        finished = c["completed"] + c["failed"] + c["canceled"]
        if 0 < finished < 60:
            mid += 1
        if last["final_states"]["completed"] == 0:
            assert last["success_rate"] is None and last["goal_completion_rate"] is None, last
        else:
            assert 0 <= last["success_rate"] <= 1 and 0 <= last["goal_completion_rate"] <= 1, last
        if last["status"] in ("running", "completed"):
            assert last["started_at"] is not None, last
        if last["finished_at"] is not None:
            break
        assert time.monotonic() < deadline, f"batch not finished after 60 s: {last}"
        time.sleep(0.05)
    assert mid >= 3, f"only {mid} of {polls} polls saw the batch mid-run"
    order = {"scheduled": 0, "running": 1, "completed": 2}
    assert all(s in order for s in statuses), statuses
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses), f"status went back: {statuses}"
    assert last["status"] == "completed", last
    assert last["counts"] == {"queued": 0, "dialing": 0, "connected": 0, "completed": 24, "failed": 36,
                              "canceled": 0}, last["counts"]
    assert last["final_states"] == _expected_finals(digits), last["final_states"]
    assert last["success_rate"] == pytest.approx(0.625, abs=1e-9), last
    assert last["goal_completion_rate"] == pytest.approx(0.375, abs=1e-9), last
    assert parse_ts(last["created_at"]) <= parse_ts(last["started_at"]) <= parse_ts(last["finished_at"]), last
    # every call ended as its digit says; finished_at is when the last one ended
    calls = batch_calls(p.api, b["id"])
    assert len(calls) == 60
    ends = [parse_ts(c["ended_at"]) for c in calls]
    assert parse_ts(last["finished_at"]) >= max(ends), (last["finished_at"], max(ends))
    for c in calls:
        st, fs, oc, goal, _ = SIM[int(c["phone"][-1])]
        assert (c["status"], c["final_state"], c["outcome"], c["goal_completed"]) == (st, fs, oc, goal), c
    # batch.completed, once, in domain_events
    ev = system.rows(f"select type, data->>'id', data->>'status' from domain_events where object_id = '{b['id']}'")
    assert ev == [["batch.completed", b["id"], "completed"]], ev


def test_rates_null_when_nothing_completed(system):
    p = _project(system)
    b = assert_created(upload(p.api, csv_text([["phone"]] + [[x] for x in phones([5, 7, 9])]), pacing=PACE))
    done = wait_batch(p.api, b["id"], timeout=30)
    assert done["status"] == "completed", done
    assert done["success_rate"] is None and done["goal_completion_rate"] is None, done
    assert done["counts"]["failed"] == 3 and done["final_states"]["busy"] == 1, done


# ============================================================ 5. results.csv


TRICKY = [
    "=SUM(A1:A9)", "+SUM(A1)", "-2+3", "@import", "\tlead tab", "\rlead cr", "-", "+", "-x", "+34 612 x",
    "-1e5", "=", "- 5", "+ 34",
    "-5", "+5", "-5.25", "+34 612", "+34 (612) 345-670", "-5 ", "+1.", "-0",
    "a=b", "'already", 'say "hi"', "a,b,c", "l1\nl2", "l1\r\nl2", " padded ", "Ñandú ünïcode", "📞🎉", "",
    "trailing tab\t", '"', "x@y", "1,5",
]


def test_results_csv(system):
    p = _project(system)
    header = ["phone", "name", "a", "b", "c"]
    cells = list(TRICKY)
    digits = list(range(10)) * 2
    P = phones(digits)
    rows: list[list[str]] = []
    kinds: list[str | None] = []  # None: accepted, else the rejection code
    for i, ph in enumerate(P):
        trio = [cells[(3 * i + k) % len(cells)] for k in range(3)]
        phone_cell = ph if i % 3 else (" " + spaced(ph) + " ")
        rows.append([phone_cell, f"n{i} ✓"] + trio)
        kinds.append(None)
    # rejected rows, in the middle and at the end
    rows.insert(3, ["=HYPERLINK(\"http://x\")", "bad", "=1", "+2", "@3"])
    kinds.insert(3, "invalid_phone")
    rows.insert(7, [P[0], "dup", "-", "c", "d"])
    kinds.insert(7, "duplicate_phone")
    rows.append([phone(1), "too", "many", "fields", "here", "=extra", "more"])
    kinds.append("too_many_fields")
    rows.append(["+34 612", "short"])  # fewer fields, and not a possible number
    kinds.append("invalid_phone")
    body = csv_text([header] + rows)
    b = assert_created(upload(p.api, body, pacing=PACE))
    n = len(rows)
    assert (b["total_rows"], b["rejected_rows"]) == (n, 4), b
    assert row_errors(b) == [(i + 1, k) for i, k in enumerate(kinds) if k], b["row_errors"]
    done = wait_batch(p.api, b["id"], timeout=60)
    assert done["status"] == "completed", done

    raw, recs = results_csv(p.api, b["id"])
    # raw: header, then one CRLF line per row, uploaded cells neutralised and quoted as the contract says
    head = ",".join(header + RESULT_COLUMNS) + "\r\n"
    assert raw.startswith(head), f"results.csv header: {raw[:200]!r}"
    pos = len(head)
    uploaded: list[list[str]] = []
    for i, row in enumerate(rows):
        cells_ = (row + [""] * len(header))[:len(header)]
        uploaded.append(cells_)
        prefix = ",".join(results_cell(c) for c in cells_) + ","
        assert raw.startswith(prefix, pos), (f"row {i + 1}: expected the line to start with {prefix!r}, "
                                             f"got {raw[pos:pos + len(prefix) + 80]!r}")
        end = raw.find("\r\n", pos + len(prefix))
        assert end >= 0, f"row {i + 1}: no CRLF"
        tail = raw[pos + len(prefix):end]
        assert tail.count(",") == len(RESULT_COLUMNS) - 1 and '"' not in tail and "\n" not in tail, (i + 1, tail)
        pos = end + 2
    assert pos == len(raw), f"results.csv has more after the last row: {raw[pos:pos + 200]!r}"

    # parsed: one record per row, in row order
    assert recs[0] == header + RESULT_COLUMNS
    assert len(recs) == n + 1, f"{len(recs) - 1} records for {n} rows"
    call_ids = set()
    for i, (rec, cells_, kind) in enumerate(zip(recs[1:], uploaded, kinds), start=1):
        assert len(rec) == len(header) + len(RESULT_COLUMNS), (i, rec)
        assert rec[:len(header)] == [neutralised(c) for c in cells_], (i, rec[:len(header)], cells_)
        res = dict(zip(RESULT_COLUMNS, rec[len(header):]))
        if kind is not None:
            assert res == {**{k: "" for k in RESULT_COLUMNS}, "error": kind}, (i, res)
            continue
        assert res["error"] == "" and res["call_id"], (i, res)
        call_ids.add(res["call_id"])
        c = p.api.call(res["call_id"])
        assert c["batch_id"] == b["id"]
        ph_cell = cells_[0].strip()
        assert c["phone"] == ph_cell.replace(" ", "").replace("-", "").replace(".", ""), (i, c["phone"], ph_cell)
        assert c["metadata"] == dict(zip(header[1:], cells_[1:])), (i, c["metadata"])
        assert res["status"] == c["status"] and res["final_state"] == c["final_state"], (i, res, c)
        assert res["outcome"] == (c["outcome"] or ""), (i, res, c)
        assert res["goal_completed"] == {True: "true", False: "false", None: ""}[c["goal_completed"]], (i, res, c)
        if c["duration_s"] is None:
            assert res["duration_s"] == "", (i, res)
        else:
            assert float(res["duration_s"]) == pytest.approx(c["duration_s"], abs=5e-4), (i, res, c)
        assert int(res["cost_micros"]) == c["cost_micros"], (i, res, c)
        assert parse_ts(res["ended_at"]) == parse_ts(c["ended_at"]), (i, res, c)
        # no recording asked for (test_recordings.py has the recorded ones)
        assert c["recording"] is None and res["recording_duration_s"] == res["recording_sha256"] == "", (i, res, c)
        st, fs, oc, goal, _ = SIM[int(c["phone"][-1])]
        assert (c["status"], c["final_state"], c["outcome"], c["goal_completed"]) == (st, fs, oc, goal), c
    assert len(call_ids) == n - 4


# ================================================ 6. pause / resume / cancel


def _control(api, bid, op):
    return api.post(f"/v1/batches/{bid}/{op}")


def _ok(r, status):
    assert r.status_code == 200, f"expected 200, got {r.status_code}: {r.text[:500]}"
    b = assert_batch_shape(r.json())
    assert b["status"] == status, b
    return b


def test_pause_then_resume(system):
    p = _project(system, pacing=PACE)
    n = 16
    P = phones([0] * n)
    b = assert_created(upload(p.api, csv_text([["phone"]] + [[x] for x in P]), pacing=120))
    bid = b["id"]
    wait_until(lambda: dialed_count(system, bid) >= 2, 20, 0.02, what="two calls dialed")
    paused = _ok(_control(p.api, bid, "pause"), "paused")
    t_paused = time.time()
    assert_counts_add_up(paused)
    _ok(_control(p.api, bid, "pause"), "paused")  # a no-op
    n0 = dialed_count(system, bid)
    assert n0 < n, "every call was dialed before the pause"
    # nothing more is dialed while paused (watched for 5 s)
    t_end = time.monotonic() + 5
    while time.monotonic() < t_end:
        assert dialed_count(system, bid) == n0, "a call was dialed while the batch was paused"
        assert get_batch(p.api, bid)["status"] == "paused"
        time.sleep(0.25)
    last_dial = max(t for _, t in db_dials(system, bid) if t is not None)
    assert last_dial <= t_paused + 0.05, f"a call was dialed {last_dial - t_paused:.3f} s after the pause answer"
    mid = get_batch(p.api, bid)
    assert mid["counts"] == {"queued": n - n0, "dialing": 0, "connected": 0, "completed": n0, "failed": 0,
                             "canceled": 0}, mid["counts"]
    assert mid["finished_at"] is None, mid
    assert len(system.dials()) >= n0 and sum(1 for d in system.dials() if d[2] in P) == n0

    _ok(_control(p.api, bid, "resume"), "running")
    _ok(_control(p.api, bid, "resume"), "running")  # a no-op
    done = wait_batch(p.api, bid, timeout=40)
    assert done["status"] == "completed", done
    assert done["final_states"]["completed"] == n and done["counts"]["completed"] == n, done
    ids = [c for c, _ in db_dials(system, bid)]
    counts = assert_never_dialed_twice(system, ids)
    assert all(counts.get(i, 0) == 1 for i in ids), "a call was not dialed exactly once"


def test_pause_resume_before_start(system):
    p = _project(system)
    b = assert_created(upload(p.api, csv_text([["phone"]] + [[x] for x in phones([0, 1])]), pacing=PACE,
                              start_at=in_seconds(3600)))
    _ok(_control(p.api, b["id"], "pause"), "paused")
    _ok(_control(p.api, b["id"], "resume"), "scheduled")  # none of its calls was dispatched
    c = _ok(_control(p.api, b["id"], "cancel"), "canceled")
    assert c["counts"]["canceled"] == 2 and c["final_states"]["canceled"] == 2, c
    assert c["started_at"] is None, c
    done = wait_batch(p.api, b["id"], timeout=10)
    assert done["status"] == "canceled" and done["finished_at"] is not None, done
    for call in batch_calls(p.api, b["id"]):
        assert (call["status"], call["final_state"], call["dialed_at"]) == ("canceled", "canceled", None), call
        assert system.dial_count(call["id"]) == 0
    # a paused batch can be canceled
    b2 = assert_created(upload(p.api, csv_text([["phone"]] + [[x] for x in phones([0, 1, 2])]), pacing=PACE,
                               start_at=in_seconds(3600)))
    _ok(_control(p.api, b2["id"], "pause"), "paused")
    c2 = _ok(_control(p.api, b2["id"], "cancel"), "canceled")
    assert c2["counts"]["canceled"] == 3 and c2["counts"]["queued"] == 0, c2
    done2 = wait_batch(p.api, b2["id"], timeout=10)
    assert done2["status"] == "canceled" and done2["final_states"]["canceled"] == 3, done2
    assert_problem(_control(p.api, b2["id"], "resume"), 409, "batch_finished")


def test_cancel_mid_batch(system):
    p = _project(system)
    n = 10
    P = phones([0] * n)
    # every call talks 2 s: the ones dialing when the cancel comes are still in flight
    b = assert_created(upload(p.api, csv_text([["phone", "sim_talk_ms"]] + [[x, "2000"] for x in P]), pacing=120))
    bid = b["id"]
    wait_until(lambda: dialed_count(system, bid) >= 2, 20, 0.02, what="two calls dialed")
    c = _ok(_control(p.api, bid, "cancel"), "canceled")
    assert_counts_add_up(c)
    assert c["finished_at"] is None, f"calls are still in flight, the batch is not finished: {c}"
    assert c["counts"]["queued"] == 0, f"no call stays queued after a cancel: {c['counts']}"
    _ok(_control(p.api, bid, "cancel"), "canceled")  # a no-op
    assert_problem(_control(p.api, bid, "pause"), 409, "batch_finished")
    assert_problem(_control(p.api, bid, "resume"), 409, "batch_finished")

    done = wait_batch(p.api, bid, timeout=30)
    assert done["status"] == "canceled", done
    calls = batch_calls(p.api, bid)
    dialed = [x for x in calls if x["dialed_at"] is not None]
    canceled = [x for x in calls if x["dialed_at"] is None]
    assert len(dialed) >= 2 and len(canceled) >= 1, (len(dialed), len(canceled))
    for x in canceled:
        assert (x["status"], x["final_state"], x["cost_micros"]) == ("canceled", "canceled", 0), x
        assert system.dial_count(x["id"]) == 0, x
    for x in dialed:
        assert (x["status"], x["final_state"]) == ("completed", "completed"), f"a dialing call must finish: {x}"
        assert x["duration_s"] >= 1.9, x
        assert system.dial_count(x["id"]) == 1, x
    assert done["counts"] == {"queued": 0, "dialing": 0, "connected": 0, "completed": len(dialed), "failed": 0,
                              "canceled": len(canceled)}, done["counts"]
    assert done["final_states"] == {**{k: 0 for k in FINAL_KEYS}, "completed": len(dialed),
                                    "canceled": len(canceled)}, done["final_states"]
    assert parse_ts(done["finished_at"]) >= max(parse_ts(x["ended_at"]) for x in dialed), done
    assert not system.rows(f"select 1 from domain_events where object_id = '{bid}'"), \
        "batch.completed is for completed batches only"


def test_control_finished_and_foreign(system):
    p = _project(system)
    other = _project(system)
    b = assert_created(upload(p.api, csv_text([["phone"]] + [[x] for x in phones([0, 5])]), pacing=PACE))
    done = wait_batch(p.api, b["id"], timeout=30)
    assert done["status"] == "completed", done
    for op in ("pause", "resume", "cancel"):
        assert_problem(_control(p.api, b["id"], op), 409, "batch_finished")
    # another project's batch, an unknown id, a malformed id: 404 everywhere
    for bad in (b["id"], str(uuid.uuid4()), "nope"):
        api = other.api if bad == b["id"] else p.api
        for op in ("pause", "resume", "cancel"):
            assert_problem(_control(api, bad, op), 404, "not_found")
        assert_problem(api.get(f"/v1/batches/{bad}"), 404, "not_found")
        assert_problem(api.get(f"/v1/batches/{bad}/results.csv"), 404, "not_found")
    assert get_batch(p.api, b["id"]) == done


# ===================================== 7. two batches at once, plus single calls


def _max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


def test_two_batches_share_the_project_rate(system):
    """Project 120/min; batch A 30/min (its own pacing binds), batch B 60/min
    (the fair share binds while single calls compete); single calls too.
    Every limit must bind at some point, so each check can fail."""
    project_rate, rate_a, rate_b, n_a, n_b, singles = 120, 30, 60, 8, 15, 8
    p = _project(system, pacing=project_rate)
    A = assert_created(upload(p.api, csv_text([["phone"]] + [[x] for x in phones([0] * n_a)]), pacing=rate_a))
    B = assert_created(upload(p.api, csv_text([["phone"]] + [[x] for x in phones([1] * n_b)]), pacing=rate_b,
                              multipart=True))
    single_ids = [assert_accepted(p.api.create_call(phone(2)))["id"] for _ in range(singles)]
    for bid, n in ((A["id"], n_a), (B["id"], n_b)):
        done = wait_batch(p.api, bid, timeout=60)
        assert done["status"] == "completed" and done["final_states"]["completed"] == n, done
    calls = db_calls(system, single_ids)
    assert all(c["final_state"] == "completed" for c in calls.values()), calls

    ta = [t for _, t in db_dials(system, A["id"])]
    tb = [t for _, t in db_dials(system, B["id"])]
    ts = [float(x[0]) for x in system.rows(
        f"select extract(epoch from dialed_at) from calls where project_id = '{p.id}' and batch_id is null")]
    assert None not in ta + tb and (len(ta), len(tb), len(ts)) == (n_a, n_b, singles)
    window = 10.0
    for name, times, rate in (("A", ta, rate_a), ("B", tb, rate_b), ("project", ta + tb + ts, project_rate)):
        most = _max_in_window(times, window)
        allowed = int(rate * window / 60) + 1
        print(f"{name}: at most {most} dials in {window:.0f} s (allowed {allowed}); "
              f"{[round(t - min(ta + tb + ts), 2) for t in sorted(times)]}")
        assert most <= allowed, (f"{name}: {most} dials in {window:.0f} s, pacing {rate}/min allows {allowed}; "
                                 f"dial times {[round(t - min(ta + tb + ts), 2) for t in sorted(times)]}")
    # they ran side by side, not one after the other, and the single calls were not starved
    assert sum(t < max(tb) for t in ta) >= n_a // 2 and sum(t < max(ta) for t in tb) >= n_b // 2, \
        (sorted(ta), sorted(tb))
    assert max(ts) < max(max(ta), max(tb)), "the single calls waited for the batches"
    first = min(ta + tb + ts)
    for name, times in (("A", ta), ("B", tb), ("single", ts)):
        assert sum(t < first + 5 for t in times) >= 2, f"{name} barely moved in the first 5 s: {sorted(times)}"


# ================================================== 8. idempotent re-upload


def test_idempotent_reupload(system):
    p = _project(system)
    key = idem_key()
    body = csv_text([["phone", "name"]] + [[x, f"n{i}"] for i, x in enumerate(phones([0, 1, 2]))])
    r1 = upload(p.api, body, pacing=PACE, idempotency_key=key)
    b1 = assert_created(r1)
    assert r1.headers.get("idempotent-replayed", "false").lower() != "true", r1.headers
    r2 = upload(p.api, body, pacing=PACE, idempotency_key=key)
    assert r2.status_code == 201, r2.text
    assert r2.headers.get("idempotent-replayed") == "true", r2.headers
    assert r2.json() == r1.json(), "a replay is the first answer"
    assert [b["id"] for b in list_batches(p.api)["data"]] == [b1["id"]]

    other = csv_text([["phone", "name"]] + [[x, "other"] for x in phones([0, 1, 2])])
    assert_problem(upload(p.api, other, pacing=PACE, idempotency_key=key), 422, "idempotency_key_reused")
    assert_problem(upload(p.api, body, pacing=PACE - 1, idempotency_key=key), 422, "idempotency_key_reused")
    assert [b["id"] for b in list_batches(p.api)["data"]] == [b1["id"]]
    assert int(system.scalar(f"select count(*) from calls where project_id = '{p.id}'")) == 3

    # concurrent uploads under one new key: one batch
    key2 = idem_key()
    answers: list = []

    def up():
        answers.append(upload(Api(system.url, p.key), body, pacing=PACE, idempotency_key=key2))

    threads = [threading.Thread(target=up) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ok = [r for r in answers if r.status_code == 201]
    assert ok and all(r.status_code in (201, 409) for r in answers), [(r.status_code, r.text[:200]) for r in answers]
    for r in answers:
        if r.status_code == 409:
            assert_problem(r, 409, "idempotency_key_in_use")
    assert len({r.json()["id"] for r in ok}) == 1, "one key, two batches"
    ids = [b["id"] for b in list_batches(p.api)["data"]]
    assert len(ids) == 2 and ids[1] == b1["id"] and ids[0] == ok[0].json()["id"], ids
    wait_validated(p.api, ids[0])
    assert int(system.scalar(f"select count(*) from calls where project_id = '{p.id}'")) == 6


def test_rejected_upload_does_not_take_the_key(system):
    p = _project(system)
    key = idem_key()
    assert_problem(upload(p.api, "phone\n", pacing=PACE, idempotency_key=key), 422, "csv_no_rows")
    assert_problem(upload(p.api, f"phone\n{phone(0)}\n", scenario="nope", pacing=PACE, idempotency_key=key),
                   422, "unknown_scenario")
    r = upload(p.api, f"phone\n{phone(0)}\n", pacing=PACE, idempotency_key=key)
    assert_created(r)
    assert r.headers.get("idempotent-replayed", "false").lower() != "true"


# ==================================================== 9. dialer killed mid-batch


def test_dialer_killed_mid_batch(system):
    p = _project(system)
    n = 30
    digits = [d for _ in range(3) for d in range(10)]
    P = phones(digits)
    b = assert_created(upload(p.api, csv_text([["phone", "sim_talk_ms"]] + [[x, "800"] for x in P]), pacing=PACE))
    bid = b["id"]
    try:
        wait_until(lambda: dialed_count(system, bid) >= 8, 30, 0.02, what="8 calls dialed")
        in_flight = int(system.scalar(f"select count(*) from calls where batch_id = '{bid}' "
                                      "and status in ('dialing', 'connected')"))
        system.dialer.kill9()
        assert in_flight >= 1, "no call was in flight when the dialer was killed"
        system.dialer.start(timeout=30)
        done = wait_batch(p.api, bid, timeout=120)
    finally:
        if not system.dialer.running():
            system.dialer.start(timeout=30)
    assert done["status"] == "completed", done
    assert sum(done["final_states"].values()) == n and done["counts"]["completed"] + done["counts"]["failed"] == n
    ids = [c for c, _ in db_dials(system, bid)]
    assert len(ids) == n
    calls = db_calls(system, ids)
    assert all(c["final_state"] for c in calls.values())
    time.sleep(1.0)  # a late second dial would be in the log by now
    counts = assert_never_dialed_twice(system, ids)
    assert_sim_results(system, calls, allow_internal_error=True)
    never = [i for i, c in calls.items() if counts.get(i, 0) == 0 and c["final_state"] != "internal_error"]
    assert not never, f"calls that ended as the sim says without being dialed: {never[:5]}"

    raw, recs = results_csv(p.api, bid)
    assert recs[0] == ["phone", "sim_talk_ms"] + RESULT_COLUMNS
    assert [r[0] for r in recs[1:]] == P, "results.csv: every row once, in row order"
    assert sorted(r[2] for r in recs[1:]) == sorted(ids), "results.csv: every call once"
    for r in recs[1:]:
        assert r[4] == calls[r[2]]["final_state"], r


# ============================================================== 10. listing


def test_list_batches(system):
    p = _project(system)
    other = _project(system)
    later = in_seconds(3600)
    made = [assert_created(upload(p.api, f"phone\n{phone(i)}\n", pacing=PACE, start_at=later))["id"]
            for i in range(3)]
    foreign = assert_created(upload(other.api, f"phone\n{phone(0)}\n", pacing=PACE, start_at=later))["id"]

    body = list_batches(p.api)
    assert [x["id"] for x in body["data"]] == made[::-1], "newest first"
    assert body["next_cursor"] is None
    for x in body["data"]:
        assert_batch_shape(x, with_errors=False)
        full = get_batch(p.api, x["id"])
        full.pop("row_errors")
        assert x == full
    assert [x["id"] for x in list_batches(other.api)["data"]] == [foreign]

    for limit in (1, 2):
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": limit} | ({"cursor": cursor} if cursor else {})
            page = list_batches(p.api, **params)
            assert len(page["data"]) <= limit
            seen += [x["id"] for x in page["data"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert pages < 10
        assert seen == made[::-1], (limit, seen)
        assert pages == -(-3 // limit), (limit, pages)
        assert foreign not in seen
    assert list_batches(p.api, limit=3)["next_cursor"] is None


# ================================================================ 11. scopes


def test_scopes(system):
    p = _project(system)
    read = system.api(system.ctl("key", "create", p.id, "--scopes", "sessions:read")["key"])
    trig = system.api(system.ctl("key", "create", p.id, "--scopes", "outbound:trigger")["key"])
    body = f"phone\n{phone(0)}\n"
    assert_problem(upload(read, body, pacing=PACE), 403, "insufficient_scope")
    assert_problem(upload(read, body, pacing=PACE, multipart=True), 403, "insufficient_scope")
    assert_problem(upload(system.api(), body, pacing=PACE), 401, "unauthorized")
    assert list_batches(read)["data"] == []

    b = assert_created(upload(trig, body, pacing=PACE, start_at=in_seconds(3600)), read)
    assert get_batch(read, b["id"])["id"] == b["id"]
    assert [x["id"] for x in list_batches(read)["data"]] == [b["id"]]
    raw, recs = results_csv(read, b["id"])
    assert len(recs) == 2
    for op in ("pause", "resume", "cancel"):
        assert_problem(_control(read, b["id"], op), 403, "insufficient_scope")
    assert_problem(trig.get(f"/v1/batches/{b['id']}"), 403, "insufficient_scope")
    assert_problem(trig.get("/v1/batches"), 403, "insufficient_scope")
    assert_problem(trig.get(f"/v1/batches/{b['id']}/results.csv"), 403, "insufficient_scope")
    _ok(_control(trig, b["id"], "pause"), "paused")
    _ok(_control(p.admin, b["id"], "resume"), "scheduled")
