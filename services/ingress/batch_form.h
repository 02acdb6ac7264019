/*
 * A batch upload as sent (docs/batches.md): its settings, as multipart form
 * fields or query parameters, and its file; checked in memory (the project's
 * rules are PostgreSQL's). Pure but for od_batch_form_query, which reads an
 * h2o request: batches.c answers from what these return, and the fuzz target
 * (fuzz/fuzz_batch_settings.c) drives the same code.
 */
#ifndef OD_INGRESS_BATCH_FORM_H
#define OD_INGRESS_BATCH_FORM_H

#include <h2o.h>
#include <jansson.h>
#include <stdint.h>

#include "od/multipart.h"
#include "od/retry.h"
#include "request_body.h"

#define OD_BATCH_FILE_NAME_MAX 255               /* characters of file_name (else 400 invalid_parameter) */
#define OD_BATCH_PACING_MAX 1000000               /* pacing_per_min (else 422 invalid_pacing) */
#define OD_BATCH_SPEND_CAP_MAX 1000000000000000LL /* spend_cap_micros: a billion currency units */

typedef struct od_batch_form {
    char *file;      /**< the CSV (heap, NUL-terminated), or NULL */
    size_t file_len;
    int have_file;   /**< a "file" part was read */
    char *file_name, *scenario, *caller_id, *start_at; /**< as sent (heap), or NULL */
    char *windows;   /**< calling_windows: as sent, then od_window_parse's canonical form */
    char *retry_on, *retry_max, *retry_delay; /**< the retry policy's fields as sent (NULL: not sent) */
    int64_t pacing;    /**< 0: the default, -1 invalid */
    int64_t spend_cap; /**< spend_cap_micros: 0 none, -1 invalid */
    od_retry_policy_t retry; /**< after od_batch_form_check */
    const char *dup;   /**< a multipart field sent twice, or NULL */
    const char *bad;   /**< a multipart field we read (or the file's name) that is not UTF-8 without NUL, or NULL */
} od_batch_form_t;

/** What od_batch_form_check refused: a 422 (or a 400 invalid_parameter) with this code, field and detail. */
typedef struct od_batch_problem {
    int status;
    const char *code;
    char field[64];
    char detail[256];
} od_batch_problem_t;

/**
 * An od_mp_parse callback (arg: the od_batch_form_t): the "file" part and
 * the settings' parts into the form; unknown parts are ignored, whatever
 * they hold. 1 (stop) when a field comes twice (form->dup names it) or a
 * field read, or the file's name, is not UTF-8 without NUL (form->bad).
 */
int od_batch_form_part(void *form, const od_mp_part_t *p);
/**
 * The settings from req's query string (not the file): all of them for a
 * text/csv upload; for a form, those it does not hold as fields. 0; -1:
 * malformed percent-encoding; -2: a setting given both ways (*twice names
 * it), so that no value sent is silently ignored.
 */
int od_batch_form_query(od_batch_form_t *form, h2o_req_t *req, const char **twice);
/** Checks the settings and puts them in canonical form. 0, or -1 and *p filled. */
int od_batch_form_check(od_batch_form_t *form, int64_t now_us, od_batch_problem_t *p);
/**
 * The checked settings as od_batch_create's parameter members: scenario,
 * pacing_per_min, start_at, caller_id, file_name, calling_windows (when
 * sent), spend_cap_micros (when set), retry_on, retry_max_attempts,
 * retry_delay_s.
 */
json_t *od_batch_form_json(const od_batch_form_t *form);
void od_batch_form_free(od_batch_form_t *form);

/**
 * PATCH /v1/batches/{id}: {"spend_cap_micros": n | null} (null: no cap).
 * The operation's arguments {"spend_cap_micros"}, or NULL with errors in `e`.
 */
json_t *od_batch_patch_body(const char *body, size_t len, ingress_errs_t *e);

#endif
