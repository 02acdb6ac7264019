/*
 * libFuzzer target for the request bodies of the control routes
 * (services/ingress/request_body.c, batch_form.c): the input's first byte
 * picks the route, the rest is the body:
 *   0 POST /v1/api-keys        ingress__key_body
 *   1 POST /v1/webhooks        ingress__webhook_body (create)
 *   2 PATCH /v1/webhooks/{id}  ingress__webhook_body
 *   3 POST /v1/scenarios       ingress__scenario_body (create)
 *   4 PATCH /v1/scenarios/{i}  ingress__scenario_body
 *   5 POST /v1/caller-ids      ingress__caller_id_body
 *   6 POST /v1/dnc (JSON)      ingress__dnc_body
 *   7 POST /v1/dnc (CSV)       ingress__dnc_body
 *   8 PATCH /v1/batches/{id}   od_batch_patch_body
 * (POST /v1/calls has fuzz_call_request, POST /v1/batches fuzz_batch_settings.)
 * Properties checked beyond "no crash, no sanitizer report, no NULL from
 * jansson passed on" (json_strict.c):
 *  - an accepted body gives arguments that serialise, holding only the
 *    route's members, with the required ones; a refused one says why
 *    (a code, and for a 422 its field);
 *  - DNC: every number kept is E.164, at most 100 invalid ones listed,
 *    their count at least that; a request-level error is a known code.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "batch_form.h"
#include "request_body.h"

#define CHECK(c) ((c) ? (void)0 : abort())

/* args serialises and holds only members named in `allowed` (space-separated, each followed by a space) */
static void args_ok(json_t *args, const char *allowed)
{
    CHECK(json_is_object(args));
    char *s = json_dumps(args, JSON_COMPACT);
    CHECK(s != NULL);
    free(s);
    const char *k;
    json_t *v;
    json_object_foreach(args, k, v)
    {
        char w[64];
        CHECK(strlen(k) < sizeof(w) - 2);
        snprintf(w, sizeof(w), " %s ", k);
        CHECK(strstr(allowed, w) != NULL);
    }
}

static void errs_ok(ingress_errs_t *e, int refused)
{
    CHECK(refused == (e->first != NULL));
    CHECK(json_array_size(e->list) > 0 || !refused);
    char *s = json_dumps(e->list, JSON_COMPACT);
    CHECK(s != NULL);
    free(s);
    json_decref(e->list);
}

static int e164_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 9 || n > 16 || s[0] != '+')
        return 0;
    for (size_t i = 1; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    switch (data[0] % 9) {
    case 0: {
        json_t *problem, *args = ingress__key_body(len > 0 ? body : NULL, len, &problem);
        if (args != NULL) {
            CHECK(problem == NULL);
            args_ok(args, " name scopes ");
            CHECK(json_is_string(json_object_get(args, "name")));
            CHECK(json_array_size(json_object_get(args, "scopes")) > 0);
            json_decref(args);
        } else {
            const char *code = json_string_value(json_object_get(problem, "code"));
            CHECK(code != NULL);
            CHECK(strcmp(code, "invalid_json") == 0 || json_is_string(json_object_get(problem, "field")));
            json_decref(problem);
        }
        break;
    }
    case 1:
    case 2: {
        int create = data[0] % 9 == 1;
        json_t *args = json_object();
        od_webhook_url_t url;
        ingress_errs_t e = INGRESS_ERRS_INIT;
        int rc = ingress__webhook_body(body, len, create, args, &url, &e);
        CHECK(rc == 0 || rc == -1 || rc == INGRESS_BODY_NOT_OBJECT);
        errs_ok(&e, rc == -1);
        if (rc == 0) {
            args_ok(args, " url event_types description enabled ");
            CHECK(!create || (json_is_string(json_object_get(args, "url")) &&
                              json_array_size(json_object_get(args, "event_types")) > 0));
            CHECK((json_object_get(args, "url") != NULL) == (url.host[0] != '\0'));
        }
        json_decref(args);
        break;
    }
    case 3:
    case 4: {
        int create = data[0] % 9 == 3;
        json_t *args = json_object();
        ingress_errs_t e = INGRESS_ERRS_INIT;
        int rc = ingress__scenario_body(body, len, create, args, &e);
        CHECK(rc == 0 || rc == -1);
        errs_ok(&e, rc == -1);
        if (rc == 0) {
            args_ok(args, " idn disclosure disclosure_enabled disclosure_off_reason opt_out_script ");
            CHECK(!create || json_is_string(json_object_get(args, "idn")));
        }
        json_decref(args);
        break;
    }
    case 5: {
        char e164[OD_PHONE_E164_SIZE];
        int rc = ingress__caller_id_body(len > 0 ? body : NULL, len, e164);
        CHECK(rc == 0 || rc == -1 || rc == -2);
        CHECK(rc != 0 || e164_ok(e164));
        break;
    }
    case 6:
    case 7: {
        ingress_dnc_import_t d;
        ingress__dnc_body(body, len, data[0] % 9 == 7, &d);
        size_t i;
        json_t *v;
        json_array_foreach(d.phones, i, v) CHECK(json_is_string(v) && e164_ok(json_string_value(v)));
        CHECK(json_array_size(d.invalid) <= INGRESS_DNC_INVALID_SHOWN && json_array_size(d.invalid) <= d.ninvalid);
        CHECK(d.n <= INGRESS_DNC_MAX_NUMBERS + 1);
        /* what the handler sends */
        json_t *args = json_pack("{so so sI ss}", "phones", d.phones, "invalid", d.invalid, "invalid_count",
                                 (json_int_t)d.ninvalid, "source", "api");
        args_ok(args, " phones invalid invalid_count source ");
        json_decref(args);
        break;
    }
    case 8: {
        ingress_errs_t e = INGRESS_ERRS_INIT;
        json_t *args = od_batch_patch_body(body, len, &e);
        errs_ok(&e, args == NULL);
        if (args != NULL) {
            args_ok(args, " spend_cap_micros ");
            json_decref(args);
        }
        break;
    }
    }
    return 0;
}
