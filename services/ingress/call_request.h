/*
 * Validation of a POST /v1/calls body: pure (no I/O, the clock passed in),
 * so unit tests and the fuzz target drive it directly.
 */
#ifndef OD_INGRESS_CALL_REQUEST_H
#define OD_INGRESS_CALL_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "od/buf.h"
#include "od/phone.h"

#define OD_METADATA_MAX 16384   /* bytes of compact JSON */
#define OD_METADATA_DEPTH 8
#define OD_SCHEDULE_PAST_US (60LL * 1000000)            /* scheduled_for may be 60 s in the past */
#define OD_SCHEDULE_AHEAD_US (30LL * 86400 * 1000000)  /* and at most 30 days ahead */

typedef struct od_call_request {
    char scenario[65];
    char phone[OD_PHONE_E164_SIZE];     /**< normalised E.164 */
    char caller_id[OD_PHONE_E164_SIZE]; /**< "" when absent */
    char *metadata;       /**< compact JSON object text (heap; "{}" when absent) */
    int64_t scheduled_us; /**< 0 when absent */
} od_call_request_t;

/** 1 if s is a scenario idn: 1 to 64 of a-z, 0-9, '_', '.', '-', starting with a letter or digit. */
int od_scenario_idn_ok(const char *s, size_t len);

/**
 * Validates `body`. Returns 0 and fills `req` (free with
 * od_call_request_free), or returns the HTTP status (400 or 422) with the
 * problem `code` and a JSON array of field errors appended to `errors`.
 */
int od_call_request_parse(const char *body, size_t len, int64_t now_us, od_call_request_t *req, const char **code,
                          od_buf_t *errors);
void od_call_request_free(od_call_request_t *req);

#endif
