/*
 * The request bodies of the control routes, checked in memory: pure (no I/O,
 * no request context), so the handlers answer from what these return and the
 * fuzz target (fuzz/fuzz_request_body.c) drives the same code. POST /v1/calls
 * has its own (call_request.h), the batches theirs (batch_settings.h).
 */
#ifndef OD_INGRESS_REQUEST_BODY_H
#define OD_INGRESS_REQUEST_BODY_H

#include <jansson.h>
#include <stddef.h>

#include "od/phone.h"
#include "od/webhook.h"

/** The errors of a request body, as the problem's `errors`; the first one's code is the problem's. */
typedef struct ingress_errs {
    json_t *list;
    const char *first, *first_msg;
} ingress_errs_t;
#define INGRESS_ERRS_INIT {json_array(), NULL, NULL}
void ingress__err_add(ingress_errs_t *e, const char *field, const char *code, const char *message);
/** Characters (code points) of a UTF-8 string. */
size_t ingress__utf8_chars(const char *s, size_t len);

/**
 * POST /v1/api-keys: {"name", "scopes"}. Returns the operation's arguments
 * {"name", "scopes"} (name "" when absent), or NULL with *problem:
 * {"code": "invalid_json"} (not a JSON object), or {"code", "field",
 * "message"} of the last problem found (the caller frees it). `body` may be
 * NULL (no body).
 */
json_t *ingress__key_body(const char *body, size_t len, json_t **problem);

/** ingress__webhook_body's answer when the body is not a JSON object (`e` untouched) */
#define INGRESS_BODY_NOT_OBJECT (-2)
/**
 * POST (create = 1) or PATCH /v1/webhooks[/{id}]: url, event_types (all by
 * default on creation), description, enabled into args. 0; -1 with errors in
 * `e`; or INGRESS_BODY_NOT_OBJECT. url->host is "" when no URL was given.
 */
int ingress__webhook_body(const char *body, size_t len, int create, json_t *args, od_webhook_url_t *url,
                          ingress_errs_t *e);

/**
 * POST (create = 1) or PATCH /v1/scenarios[/{idn}]: idn (create only),
 * disclosure, disclosure_enabled, disclosure_off_reason, opt_out_script into
 * args. 0, or -1 with errors in `e` (invalid_json first when not an object).
 */
int ingress__scenario_body(const char *body, size_t len, int create, json_t *args, ingress_errs_t *e);

/**
 * POST /v1/caller-ids: {"phone"}. 0 and the number in e164; -1 not a JSON
 * object of that one member (invalid_json); -2 not an E.164 number
 * (invalid_phone). `body` may be NULL (no body).
 */
int ingress__caller_id_body(const char *body, size_t len, char e164[OD_PHONE_E164_SIZE]);

/** A DNC import: the numbers read, the invalid ones by position. */
typedef struct ingress_dnc_import {
    json_t *phones;    /**< E.164 strings */
    json_t *invalid;   /**< the first INGRESS_DNC_INVALID_SHOWN invalid ones: {row|index, value, code} */
    size_t ninvalid, n;
    size_t phone_col;  /**< SIZE_MAX: not known yet (the first record decides) */
    int header;        /**< the first record named the phone column */
    const char *error; /**< a request-level problem's code (invalid_json, too_many_numbers, a CSV code), or NULL */
} ingress_dnc_import_t;
#define INGRESS_DNC_MAX_NUMBERS 1000000 /* per request */
#define INGRESS_DNC_INVALID_SHOWN 100   /* invalid numbers listed in the answer */
/**
 * POST /v1/dnc: {"phones": [...]} (csv = 0) or a CSV (csv = 1) with a header
 * naming a `phone` column, or without, one number per line (first column),
 * into d, which it initialises (free d->phones and d->invalid after).
 */
void ingress__dnc_body(const char *body, size_t len, int csv, ingress_dnc_import_t *d);

#endif
