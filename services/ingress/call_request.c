#include "call_request.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/phone.h"
#include "od/rfc3339.h"
#include "od/utf8.h"

typedef struct errs {
    od_buf_t *out;
    int n;
    const char *first;
} errs_t;

static void add(errs_t *e, const char *field, const char *code, const char *message)
{
    od_buf_puts(e->out, e->n++ == 0 ? "[" : ",");
    od_buf_puts(e->out, "{\"field\":");
    od_buf_json_str(e->out, field, strlen(field));
    od_buf_puts(e->out, ",\"code\":");
    od_buf_json_str(e->out, code, strlen(code));
    od_buf_puts(e->out, ",\"message\":");
    od_buf_json_str(e->out, message, strlen(message));
    od_buf_puts(e->out, "}");
    if (e->first == NULL)
        e->first = code;
}

static int depth_ok(json_t *v, int depth)
{
    if (depth > OD_METADATA_DEPTH)
        return 0;
    const char *k;
    json_t *x;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, k, x) if (!depth_ok(x, depth + 1)) return 0;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, x) if (!depth_ok(x, depth + 1)) return 0;
    }
    return 1;
}

int od_scenario_idn_ok(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        int alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
            return 0;
    }
    return 1;
}

int od_call_request_parse(const char *body, size_t len, int64_t now_us, od_call_request_t *req, const char **code,
                          od_buf_t *errors)
{
    memset(req, 0, sizeof(*req));
    errs_t e = {errors, 0, NULL};
    json_error_t jerr;
    json_t *root = len > 0 ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (root == NULL) {
        const char *why = "the body is empty; send a JSON object";
        if (len > 0) {
            /* jansson's text quotes the input, cut anywhere: only its valid UTF-8 goes into the problem's JSON */
            jerr.text[od_utf8_cut(jerr.text, strlen(jerr.text), sizeof(jerr.text) - 1)] = '\0';
            why = jerr.text;
        }
        add(&e, "", "invalid_json", why);
        od_buf_puts(errors, "]");
        *code = "invalid_json";
        return 400;
    }
    if (!json_is_object(root)) {
        add(&e, "", "invalid_json", "the body must be a JSON object");
        od_buf_puts(errors, "]");
        json_decref(root);
        *code = "invalid_json";
        return 400;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "scenario") != 0 && strcmp(key, "phone") != 0 && strcmp(key, "metadata") != 0 &&
            strcmp(key, "scheduled_for") != 0 && strcmp(key, "caller_id") != 0)
            add(&e, key, "unknown_field", "this field is not part of a call request");
    }

    v = json_object_get(root, "scenario");
    if (v == NULL || json_is_null(v))
        add(&e, "scenario", "missing_field", "scenario is required");
    else if (!json_is_string(v))
        add(&e, "scenario", "invalid_type", "scenario must be a string");
    else if (!od_scenario_idn_ok(json_string_value(v), json_string_length(v)))
        add(&e, "scenario", "unknown_scenario", "no scenario has this name");
    else
        memcpy(req->scenario, json_string_value(v), json_string_length(v) + 1);

    v = json_object_get(root, "phone");
    const char *pcode;
    if (v == NULL || json_is_null(v))
        add(&e, "phone", "missing_field", "phone is required");
    else if (!json_is_string(v))
        add(&e, "phone", "invalid_type", "phone must be a string in E.164 format");
    else if (od_phone_parse_e164(json_string_value(v), json_string_length(v), req->phone, &pcode) != 0)
        add(&e, "phone", pcode,
            strcmp(pcode, "invalid_phone") == 0 ? "phone must be in E.164 format, e.g. +34123456789"
                                                 : "this number cannot exist (wrong length or country code)");

    v = json_object_get(root, "caller_id");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v))
            add(&e, "caller_id", "invalid_type", "caller_id must be a string in E.164 format");
        else if (od_phone_parse_e164(json_string_value(v), json_string_length(v), req->caller_id, &pcode) != 0)
            add(&e, "caller_id", "caller_id_not_verified", "caller_id must be one of the project's verified numbers");
    }

    v = json_object_get(root, "metadata");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_object(v)) {
            add(&e, "metadata", "invalid_type", "metadata must be a JSON object");
        } else if (!depth_ok(v, 1)) {
            add(&e, "metadata", "metadata_too_deep", "metadata nests too deeply (at most 8 levels)");
        } else {
            char *m = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
            if (m == NULL || strlen(m) > OD_METADATA_MAX) {
                add(&e, "metadata", "metadata_too_large", "metadata must be at most 16 KiB of JSON");
                free(m);
            } else {
                req->metadata = m;
            }
        }
    }

    v = json_object_get(root, "scheduled_for");
    if (v != NULL && !json_is_null(v)) {
        const char *tcode;
        if (!json_is_string(v))
            add(&e, "scheduled_for", "invalid_type", "scheduled_for must be an RFC 3339 time string");
        else if (od_rfc3339_parse(json_string_value(v), json_string_length(v), &req->scheduled_us, &tcode) != 0)
            add(&e, "scheduled_for", "invalid_datetime",
                "scheduled_for must be an RFC 3339 time, e.g. 2026-12-01T09:30:00Z");
        else if (req->scheduled_us < now_us - OD_SCHEDULE_PAST_US)
            add(&e, "scheduled_for", "scheduled_for_in_past", "scheduled_for is in the past");
        else if (req->scheduled_us > now_us + OD_SCHEDULE_AHEAD_US)
            add(&e, "scheduled_for", "scheduled_for_too_far", "scheduled_for is more than 30 days ahead");
    }
    json_decref(root);
    if (e.n > 0) {
        od_buf_puts(errors, "]");
        od_call_request_free(req);
        *code = e.first;
        return 422;
    }
    if (req->metadata == NULL)
        req->metadata = od_strdup("{}");
    return 0;
}

void od_call_request_free(od_call_request_t *req)
{
    free(req->metadata);
    req->metadata = NULL;
}
