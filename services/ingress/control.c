/*
 * The project's controls (docs/control.md): the do-not-call list, verified
 * caller IDs, billing and the audit log. Each request is checked here and
 * answered by one od_control_api statement (proto/sql/006_control.sql).
 * A DNC import (JSON or CSV, 100,000 numbers in one request) is normalised
 * here: every number to E.164, the ones that are not reported by position.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch_file.h"
#include "ingress_int.h"
#include "od/core.h"
#include "od/csv.h"
#include "od/phone.h"
#include "od/rfc3339.h"


static void control(ctx_t *ctx, const char *op, json_t *args)
{
    ingress__api_run(ctx, "control_api", op, args, NULL);
}

/* limit (1..200) into args: 0, or -1 after answering 400 (args and ctx freed). */
static int limit_param(ctx_t *ctx, h2o_req_t *req, json_t *args, int *bad)
{
    char *v = od_http_query(req, "limit", bad), *end;
    if (v == NULL)
        return 0;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 1 || n > 200)
        return json_decref(args), ingress__bad_param(ctx, "limit", "limit must be an integer from 1 to 200"), -1;
    json_object_set_new(args, "limit", json_integer(n));
    return 0;
}

/* ---- DNC ---- */

#define DNC_PHONE_MAX 64 /* characters of a number to look up, separators included */

void ingress__list_dnc(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = json_object();
    int bad = 0;
    char e164[OD_PHONE_E164_SIZE], *v;
    if (limit_param(ctx, req, args, &bad) != 0)
        return;
    if ((v = od_http_query(req, "phone", &bad)) != NULL) { /* a text that is no number is on no list */
        if (ingress__utf8_chars(v, strlen(v)) > DNC_PHONE_MAX)
            return json_decref(args), ingress__bad_param(ctx, "phone", "phone is at most 64 characters");
        json_object_set_new(args, "phone", json_string(od_batch_phone(v, strlen(v), e164) == 0 ? e164 : v));
    }
    if ((v = od_http_query(req, "cursor", &bad)) != NULL) {
        /* E.164 syntax only: the page holds the numbers after it, listed or not, possible or not */
        size_t n = strlen(v);
        if (n < 1 + OD_PHONE_MIN_DIGITS || n > 1 + OD_PHONE_MAX_DIGITS || v[0] != '+' || v[1] == '0' ||
            strspn(v + 1, "0123456789") != n - 1)
            return json_decref(args), ingress__bad_param(ctx, "cursor", "must be a next_cursor of this list");
        json_object_set_new(args, "cursor", json_string(v));
    }
    if (bad)
        return json_decref(args), ingress__bad_query(ctx);
    control(ctx, "list_dnc", args);
}

void ingress__add_dnc(ctx_t *ctx, h2o_req_t *req)
{
    ingress_dnc_import_t d;
    h2o_iovec_t ct = od_http_header(req, "content-type");
    const char *body = req->entity.base ? req->entity.base : "";
    size_t len = req->entity.base ? req->entity.len : 0;
    const char *source = "api";
    if (ct.base != NULL && ct.len >= 16 && strncasecmp(ct.base, "application/json", 16) == 0) {
        ingress__dnc_body(body, len, 0, &d);
    } else if (ct.base != NULL && ct.len >= 8 && strncasecmp(ct.base, "text/csv", 8) == 0) {
        source = "csv";
        ingress__dnc_body(body, len, 1, &d);
    } else {
        ingress__reply_problem(ctx, 415, "unsupported_media_type",
                               "send {\"phones\": [...]} as application/json, or the numbers as text/csv", NULL);
        ingress__ctx_free(ctx);
        return;
    }
    if (d.error != NULL || (json_array_size(d.phones) == 0 && d.ninvalid == 0)) {
        const char *code = d.error ? d.error : "no_numbers";
        int status = strcmp(code, "invalid_json") == 0 ? 400 : 422;
        const char *detail = strcmp(code, "invalid_json") == 0 ? "the body must be {\"phones\": [\"+34...\", ...]}"
                             : strcmp(code, "too_many_numbers") == 0 ? "at most 1,000,000 numbers in one request"
                             : strcmp(code, "no_numbers") == 0       ? "the request holds no number"
                                                                     : "the CSV is malformed";
        json_decref(d.phones);
        json_decref(d.invalid);
        ingress__reply_problem(ctx, status, code, detail, NULL);
        ingress__ctx_free(ctx);
        return;
    }
    json_t *args = json_pack("{so so sI ss}", "phones", d.phones, "invalid", d.invalid, "invalid_count",
                             (json_int_t)d.ninvalid, "source", source);
    ingress__api_run_heavy(ctx, "control_api", "add_dnc", args);
}

/* The number of a path like /v1/dnc/%2B34612345670 (or /v1/dnc/+34612345670): 0, or -1 after answering 404. */
static int path_phone(ctx_t *ctx, char e164[OD_PHONE_E164_SIZE])
{
    h2o_iovec_t v = ctx->params.v[0];
    char raw[64];
    size_t n = 0;
    for (size_t i = 0; i < v.len && n < sizeof(raw) - 1; i++) {
        if (v.base[i] == '%' && i + 2 < v.len && strncasecmp(v.base + i, "%2B", 3) == 0) {
            raw[n++] = '+';
            i += 2;
        } else {
            raw[n++] = v.base[i];
        }
    }
    raw[n] = '\0';
    if (v.len >= sizeof(raw) || od_phone_parse_e164(raw, n, e164, NULL) != 0) {
        ingress__reply_problem(ctx, 404, "not_found", "no such number on this project's do-not-call list", NULL);
        ingress__ctx_free(ctx);
        return -1;
    }
    return 0;
}

void ingress__delete_dnc(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    char e164[OD_PHONE_E164_SIZE];
    if (path_phone(ctx, e164) == 0)
        control(ctx, "delete_dnc", json_pack("{ss}", "phone", e164));
}

/* ---- caller IDs ---- */

void ingress__list_caller_ids(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    control(ctx, "list_caller_ids", json_object());
}

void ingress__add_caller_id(ctx_t *ctx, h2o_req_t *req)
{
    if (ingress__json_body_type(ctx, req) != 0)
        return;
    char e164[OD_PHONE_E164_SIZE];
    int rc = ingress__caller_id_body(req->entity.base, req->entity.len, e164);
    if (rc == -1) {
        ingress__reply_problem(ctx, 400, "invalid_json", "the body must be a JSON object {\"phone\"}", NULL);
        ingress__ctx_free(ctx);
        return;
    }
    if (rc != 0) {
        ingress__reply_problem(ctx, 422, "invalid_phone", "phone must be in E.164 format, e.g. +34123456789",
                               "[{\"field\":\"phone\",\"code\":\"invalid_phone\","
                               "\"message\":\"phone must be in E.164 format, e.g. +34123456789\"}]");
        ingress__ctx_free(ctx);
        return;
    }
    control(ctx, "add_caller_id", json_pack("{ss}", "phone", e164));
}

/* ---- billing, audit log ---- */

/* An RFC 3339 query parameter into args (normalised): 0, or -1 after answering 400 (args and ctx freed). */
static int time_param(ctx_t *ctx, h2o_req_t *req, json_t *args, const char *name, int *bad)
{
    char *v = od_http_query(req, name, bad), ts[OD_RFC3339_BUF_SIZE];
    int64_t us;
    if (v == NULL)
        return 0;
    if (od_rfc3339_parse(v, strlen(v), &us, NULL) != 0)
        return json_decref(args), ingress__bad_param(ctx, name, "must be an RFC 3339 time, e.g. 2026-11-01T00:00:00Z"),
               -1;
    od_rfc3339_format(us, ts);
    json_object_set_new(args, name, json_string(ts));
    return 0;
}

void ingress__billing(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = json_object();
    int bad = 0;
    if (time_param(ctx, req, args, "from", &bad) != 0 || time_param(ctx, req, args, "to", &bad) != 0)
        return;
    if (bad)
        return json_decref(args), ingress__bad_query(ctx);
    /* `to` before `from` is an empty range: zeros, not an error (no schema can say "to >= from") */
    control(ctx, "billing", args);
}

void ingress__audit_log(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = json_object();
    int bad = 0;
    char *v, *end;
    if (limit_param(ctx, req, args, &bad) != 0)
        return;
    if ((v = od_http_query(req, "cursor", &bad)) != NULL) {
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (*v == '\0' || *end != '\0' || errno != 0 || n < 1)
            return json_decref(args), ingress__bad_param(ctx, "cursor", "must be a next_cursor of this list");
        json_object_set_new(args, "cursor", json_string(v));
    }
    if ((v = od_http_query(req, "action", &bad)) != NULL) {
        if (ingress__utf8_chars(v, strlen(v)) > 64) /* characters, as the document's maxLength */
            return json_decref(args), ingress__bad_param(ctx, "action", "unknown action");
        json_object_set_new(args, "action", json_string(v));
    }
    if (bad)
        return json_decref(args), ingress__bad_query(ctx);
    control(ctx, "audit_log", args);
}
