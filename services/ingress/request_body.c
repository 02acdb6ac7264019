/*
 * The request bodies of the control routes, checked in memory
 * (request_body.h). The handlers (ingress.c, webhooks.c, scenarios.c,
 * control.c) answer from what these return.
 */
#include "request_body.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "batch_file.h"
#include "call_request.h"
#include "od/core.h"
#include "od/csv.h"

void ingress__err_add(ingress_errs_t *e, const char *field, const char *code, const char *message)
{
    if (e->first == NULL) {
        e->first = code;
        e->first_msg = message;
    }
    json_array_append_new(e->list, json_pack("{ss ss ss}", "field", field, "code", code, "message", message));
}

size_t ingress__utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

/* ---- POST /v1/api-keys ---- */

unsigned od_scope_parse(const char *name, size_t len)
{
    static const struct {
        const char *name;
        unsigned bit;
    } scopes[] = {{"outbound:trigger", OD_SCOPE_TRIGGER}, {"sessions:read", OD_SCOPE_READ},
                  {"webhooks:manage", OD_SCOPE_WEBHOOKS}, {"dnc:manage", OD_SCOPE_DNC},
                  {"admin", OD_SCOPE_ADMIN}};
    for (size_t i = 0; i < OD_ARRAY_SIZE(scopes); i++)
        if (strlen(scopes[i].name) == len && memcmp(scopes[i].name, name, len) == 0)
            return scopes[i].bit;
    return 0;
}

json_t *ingress__key_body(const char *body, size_t len, json_t **problem)
{
    json_error_t jerr;
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    *problem = NULL;
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        *problem = json_pack("{ss}", "code", "invalid_json");
        return NULL;
    }
    const char *k, *field = NULL, *code = NULL, *msg = NULL;
    json_t *v, *scopes = json_object_get(root, "scopes"), *name = json_object_get(root, "name");
    json_object_foreach(root, k, v) if (strcmp(k, "name") != 0 && strcmp(k, "scopes") != 0) field = k,
        code = "unknown_field", msg = "this field is not part of an API key request";
    if (name != NULL && !json_is_null(name) && (!json_is_string(name) || json_string_length(name) > 100))
        field = "name", code = "invalid_type", msg = "name must be a string of at most 100 characters";
    if (!json_is_array(scopes) || json_array_size(scopes) == 0)
        field = "scopes", code = "missing_field", msg = "scopes must be a non-empty array of scope names";
    size_t i;
    json_array_foreach(scopes, i, v) if (!json_is_string(v) || od_scope_parse(json_string_value(v),
                                                                              json_string_length(v)) == 0)
        field = "scopes", code = "unknown_scope",
        msg = "scopes are outbound:trigger, sessions:read, webhooks:manage, dnc:manage and admin";
    json_t *args = NULL;
    if (code != NULL)
        *problem = json_pack("{ss ss ss}", "code", code, "field", field, "message", msg);
    else
        args = json_pack("{ss sO}", "name", json_is_string(name) ? json_string_value(name) : "", "scopes", scopes);
    json_decref(root);
    return args;
}

/* ---- POST, PATCH /v1/webhooks ---- */

#define DESCRIPTION_MAX 500 /* characters */

static const char *const event_types[] = {
    "call.queued",   "call.dialing",  "call.connected",  "call.completed",
    "call.failed",   "call.canceled", "batch.completed", "caller_id.reputation_warning",
};

int ingress__webhook_body(const char *body, size_t len, int create, json_t *args, od_webhook_url_t *url,
                          ingress_errs_t *e)
{
    json_error_t jerr;
    json_t *root = len > 0 ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (!json_is_object(root)) {
        json_decref(root);
        return INGRESS_BODY_NOT_OBJECT;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        if (strcmp(key, "url") != 0 && strcmp(key, "event_types") != 0 && strcmp(key, "description") != 0 &&
            strcmp(key, "enabled") != 0)
            ingress__err_add(e, key, "unknown_field", "this field is not part of a webhook endpoint");
    }
    url->host[0] = '\0';
    v = json_object_get(root, "url");
    if (v == NULL && create) {
        ingress__err_add(e, "url", "invalid_webhook_url", "url is required");
    } else if (v != NULL) {
        const char *why = NULL;
        if (!json_is_string(v))
            ingress__err_add(e, "url", "invalid_webhook_url", "url must be a string");
        else if (od_webhook_url_parse(json_string_value(v), json_string_length(v), url, &why) != 0)
            ingress__err_add(e, "url", "invalid_webhook_url", why);
        else
            json_object_set(args, "url", v);
    }
    v = json_object_get(root, "event_types");
    if (v != NULL) {
        int ok = json_is_array(v) && json_array_size(v) > 0;
        json_t *types = json_array(), *t;
        size_t i;
        json_array_foreach(v, i, t)
        {
            size_t k = 0;
            while (ok && k < OD_ARRAY_SIZE(event_types) &&
                   !(json_is_string(t) && strcmp(json_string_value(t), event_types[k]) == 0))
                k++;
            if (k == OD_ARRAY_SIZE(event_types))
                ok = 0;
            if (!ok)
                break;
            /* each type once, in the order given */
            size_t j;
            json_t *seen;
            int dup = 0;
            json_array_foreach(types, j, seen) dup |= strcmp(json_string_value(seen), event_types[k]) == 0;
            if (!dup)
                json_array_append_new(types, json_string(event_types[k]));
        }
        if (ok)
            json_object_set_new(args, "event_types", types);
        else {
            json_decref(types);
            ingress__err_add(e, "event_types", "invalid_event_types",
                "event_types must be a non-empty list of: call.queued, call.dialing, call.connected, "
                "call.completed, call.failed, call.canceled, batch.completed");
        }
    } else if (create) {
        json_t *all = json_array();
        for (size_t k = 0; k < OD_ARRAY_SIZE(event_types); k++)
            json_array_append_new(all, json_string(event_types[k]));
        json_object_set_new(args, "event_types", all);
    }
    v = json_object_get(root, "description");
    if (v != NULL) {
        if (!json_is_string(v))
            ingress__err_add(e, "description", "invalid_type", "description must be a string");
        else if (ingress__utf8_chars(json_string_value(v), json_string_length(v)) > DESCRIPTION_MAX)
            ingress__err_add(e, "description", "description_too_long", "description must be at most 500 characters");
        else if (memchr(json_string_value(v), '\0', json_string_length(v)) != NULL)
            ingress__err_add(e, "description", "invalid_type", "description must not hold NUL characters");
        else
            json_object_set(args, "description", v);
    }
    v = json_object_get(root, "enabled");
    if (v != NULL) {
        if (!json_is_boolean(v))
            ingress__err_add(e, "enabled", "invalid_type", "enabled must be true or false");
        else
            json_object_set(args, "enabled", v);
    }
    if (e->first == NULL && !create && json_object_size(root) == 0)
        ingress__err_add(e, "", "invalid_json", "nothing to change: give url, event_types, description or enabled");
    json_decref(root);
    return e->first != NULL ? -1 : 0;
}


/* ---- POST, PATCH /v1/scenarios ---- */

#define DISCLOSURE_MAX 500   /* characters */
#define REASON_MAX 500       /* characters */
#define OPT_OUT_SCRIPT_MAX 1000

/* A text field of 1..max characters, without NUL, into args. */
static void text_field(ingress_errs_t *e, json_t *root, json_t *args, const char *name, size_t max,
                       const char *code, const char *message)
{
    json_t *v = json_object_get(root, name);
    if (v == NULL)
        return;
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        memchr(json_string_value(v), '\0', json_string_length(v)) != NULL ||
        ingress__utf8_chars(json_string_value(v), json_string_length(v)) > max)
        ingress__err_add(e, name, code, message);
    else
        json_object_set(args, name, v);
}

int ingress__scenario_body(const char *body, size_t len, int create, json_t *args, ingress_errs_t *e)
{
    static const char *const fields[] = {"idn", "disclosure", "disclosure_enabled", "disclosure_off_reason",
                                         "opt_out_script"};
    json_error_t jerr;
    json_t *root = len > 0 ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr)
                                       : NULL;
    const char *key;
    json_t *v;
    if (!json_is_object(root)) {
        ingress__err_add(e, "", "invalid_json",
                         "the body must be a JSON object {\"idn\", \"disclosure\", \"disclosure_enabled\", "
                         "\"disclosure_off_reason\", \"opt_out_script\"}");
        goto out;
    }
    json_object_foreach(root, key, v)
    {
        size_t i = create ? 0 : 1; /* idn names the scenario on creation only; PATCH has it in the path */
        while (i < OD_ARRAY_SIZE(fields) && strcmp(key, fields[i]) != 0)
            i++;
        if (i == OD_ARRAY_SIZE(fields))
            ingress__err_add(e, key, "unknown_field",
                             create ? "this field is not part of a scenario"
                                    : "this field is not part of a scenario, or cannot be changed");
    }
    if (create) {
        v = json_object_get(root, "idn");
        if (!json_is_string(v) || !od_scenario_idn_ok(json_string_value(v), json_string_length(v)))
            ingress__err_add(e, "idn", "invalid_scenario_idn",
                             "idn is required: 1 to 64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit");
        else
            json_object_set(args, "idn", v);
    }
    text_field(e, root, args, "disclosure", DISCLOSURE_MAX, "invalid_disclosure",
               "disclosure must be a text of 1 to 500 characters");
    text_field(e, root, args, "disclosure_off_reason", REASON_MAX, "invalid_disclosure_off_reason",
               "disclosure_off_reason must be a text of 1 to 500 characters");
    text_field(e, root, args, "opt_out_script", OPT_OUT_SCRIPT_MAX, "invalid_opt_out_script",
               "opt_out_script must be a text of 1 to 1000 characters");
    v = json_object_get(root, "disclosure_enabled");
    if (v != NULL && !json_is_boolean(v))
        ingress__err_add(e, "disclosure_enabled", "invalid_type", "disclosure_enabled must be true or false");
    else if (v != NULL)
        json_object_set(args, "disclosure_enabled", v);
    if (json_is_true(v) && json_object_get(root, "disclosure_off_reason") != NULL)
        ingress__err_add(e, "disclosure_off_reason", "invalid_disclosure_off_reason",
                         "disclosure_off_reason goes with disclosure_enabled false only");
    if (e->first == NULL && !create && json_object_size(root) == 0)
        ingress__err_add(e, "", "invalid_json",
                         "nothing to change: give disclosure, disclosure_enabled, disclosure_off_reason or "
                         "opt_out_script");
out:
    json_decref(root);
    return e->first != NULL ? -1 : 0;
}


/* ---- POST /v1/dnc ---- */

static void dnc_take(ingress_dnc_import_t *d, const char *cell, size_t len, size_t pos, const char *pos_name)
{
    char e164[OD_PHONE_E164_SIZE];
    if (++d->n > INGRESS_DNC_MAX_NUMBERS) {
        d->error = "too_many_numbers";
        return;
    }
    if (od_batch_phone(cell, len, e164) == 0) {
        json_array_append_new(d->phones, json_string(e164));
        return;
    }
    if (d->ninvalid++ < INGRESS_DNC_INVALID_SHOWN) {
        json_t *e = json_object();
        size_t shown = len < 64 ? len : 64;
        while (shown < len && shown > 0 && ((unsigned char)cell[shown] & 0xC0) == 0x80)
            shown--; /* not in the middle of a UTF-8 sequence */
        json_object_set_new(e, pos_name, json_integer((json_int_t)pos));
        json_object_set_new(e, "value", json_stringn(cell, shown));
        json_object_set_new(e, "code", json_string("invalid_phone"));
        json_array_append_new(d->invalid, e);
    }
}

/* A CSV of numbers: with a header naming a `phone` column, or without, one number per line (first column). */
static int on_dnc_record(void *arg, size_t recno, size_t line, const od_csv_field_t *f, size_t n)
{
    ingress_dnc_import_t *d = arg;
    (void)line;
    if (recno == 0) {
        for (size_t i = 0; i < n; i++) {
            const char *p = f[i].p;
            size_t len = f[i].len;
            while (len > 0 && p[0] == ' ')
                p++, len--;
            while (len > 0 && p[len - 1] == ' ')
                len--;
            if (len == 5 && strncasecmp(p, "phone", 5) == 0) {
                d->phone_col = i;
                d->header = 1;
                return 0;
            }
        }
        d->phone_col = 0; /* no header: the first record is a number too */
    }
    /* rows as in batches: 1 = the first number's record (a header is not a row) */
    size_t row = d->header ? recno : recno + 1;
    if (d->phone_col < n)
        dnc_take(d, f[d->phone_col].p, f[d->phone_col].len, row, "row");
    else
        dnc_take(d, "", 0, row, "row");
    return d->error != NULL;
}

void ingress__dnc_body(const char *body, size_t len, int csv, ingress_dnc_import_t *d)
{
    *d = (ingress_dnc_import_t){.phones = json_array(), .invalid = json_array(), .phone_col = SIZE_MAX};
    if (!csv) {
        json_error_t jerr;
        json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr), *phones = json_object_get(root, "phones");
        size_t i;
        json_t *v;
        if (!json_is_object(root) || !json_is_array(phones) || json_object_size(root) != 1) {
            d->error = "invalid_json";
        } else {
            json_array_foreach(phones, i, v)
            {
                if (!json_is_string(v)) {
                    d->error = "invalid_json";
                    break;
                }
                dnc_take(d, json_string_value(v), json_string_length(v), i, "index");
                if (d->error != NULL)
                    break;
            }
        }
        json_decref(root);
    } else {
        od_csv_error_t err;
        od_csv_err_t rc = od_csv_parse(body, len, OD_BATCH_MAX_COLUMNS, on_dnc_record, d, &err);
        if (rc != OD_CSV_OK && rc != OD_CSV_EABORT)
            d->error = od_csv_code(rc);
    }
}

/* ---- POST /v1/caller-ids ---- */

int ingress__caller_id_body(const char *body, size_t len, char e164[OD_PHONE_E164_SIZE])
{
    json_error_t jerr;
    json_t *root = body ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    json_t *phone = json_object_get(root, "phone");
    int rc = 0;
    if (!json_is_object(root) || json_object_size(root) != 1 || phone == NULL)
        rc = -1;
    else if (!json_is_string(phone) ||
             od_phone_parse_e164(json_string_value(phone), json_string_length(phone), e164, NULL) != 0)
        rc = -2;
    json_decref(root);
    return rc;
}
