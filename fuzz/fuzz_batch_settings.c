/*
 * libFuzzer target for a batch upload's settings (services/ingress/
 * batch_form.c), as POST /v1/batches reads them: the input's first byte
 * picks the form, the rest is
 *   even: the query string of a text/csv upload (od_batch_form_query, on a
 *         request built by hand);
 *   odd:  a multipart/form-data upload: the first line the Content-Type
 *         (boundary "XyZ" when it gives none), the rest the body
 *         (od_mp_parse with od_batch_form_part);
 * then, as the handler does, od_batch_form_check (the clock fixed at
 * 2026-11-23T12:00:00Z) and od_batch_form_json, with the members the
 * handler adds.
 * Properties checked beyond "no crash, no sanitizer report, no NULL from
 * jansson passed on" (json_strict.c) — the last is issue 18's crash
 * (`?scenario=%FF`, a multipart filename that is not UTF-8):
 *  - a refusal has a code, a field and a detail that are valid UTF-8 (they
 *    go into the problem's JSON) and no `"` or `\` in code and field
 *    (written unescaped there);
 *  - accepted settings: a scenario of 1 to 64 bytes, a caller_id in E.164,
 *    start_at in the canonical 24-byte form within the window, and the
 *    parameter serialises;
 *  - check is idempotent: checking the accepted (canonical) settings again
 *    accepts them unchanged.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch_form.h"
#include "od/core.h"
#include "od/utf8.h"
#include "od/multipart.h"

#define CHECK(c) ((c) ? (void)0 : abort())
#define NOW_US 1795435200000000LL /* 2026-11-23T12:00:00Z */

static void problem_ok(const od_batch_problem_t *p)
{
    if (getenv("FUZZ_VERBOSE") != NULL)
        fprintf(stderr, "refused: %s %s: %s\n", p->code, p->field, p->detail);
    CHECK(p->code != NULL && p->code[0] != '\0' && p->field[0] != '\0' && p->detail[0] != '\0');
    CHECK(od_utf8_check(p->detail, strlen(p->detail)) == 0 && od_utf8_check(p->field, strlen(p->field)) == 0);
    CHECK(strpbrk(p->code, "\"\\") == NULL && strpbrk(p->field, "\"\\") == NULL);
}

static char *dup_or_null(const char *s)
{
    return s ? od_strdup(s) : NULL;
}

static void settings_ok(od_batch_form_t *form)
{
    size_t sl = strlen(form->scenario);
    CHECK(sl >= 1 && sl <= 64);
    CHECK(form->caller_id == NULL || form->caller_id[0] == '+');
    CHECK(form->start_at == NULL || strlen(form->start_at) == 24);
    json_t *p = od_batch_form_json(form);
    /* what the handler adds */
    json_object_set_new(p, "key_id", json_string("0191c2a0-0000-7000-8000-000000000001"));
    json_object_set_new(p, "project_id", json_string("0191c2a0-0000-7000-8000-000000000002"));
    json_object_set_new(p, "requests_per_hour", json_integer(1000));
    json_object_set_new(p, "id", json_string("0191c2a0-0000-7000-8000-000000000003"));
    char *head = json_dumps(p, JSON_COMPACT);
    CHECK(head != NULL && head[strlen(head) - 1] == '}');
    free(head);
    json_decref(p);
    /* the canonical settings check again to themselves */
    od_batch_form_t again = {
        .file_name = dup_or_null(form->file_name), .scenario = dup_or_null(form->scenario),
        .caller_id = dup_or_null(form->caller_id), .start_at = dup_or_null(form->start_at),
        .windows = dup_or_null(form->windows), .retry_on = dup_or_null(form->retry_on),
        .retry_max = dup_or_null(form->retry_max), .retry_delay = dup_or_null(form->retry_delay),
        .pacing = form->pacing, .spend_cap = form->spend_cap,
    };
    od_batch_problem_t pr;
    CHECK(od_batch_form_check(&again, NOW_US, &pr) == 0);
    CHECK((again.caller_id == NULL) == (form->caller_id == NULL));
    CHECK(again.caller_id == NULL || strcmp(again.caller_id, form->caller_id) == 0);
    CHECK(again.start_at == NULL || strcmp(again.start_at, form->start_at) == 0);
    CHECK(again.windows == NULL || strcmp(again.windows, form->windows) == 0);
    od_batch_form_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    od_batch_form_t form = {0};
    int ok;
    if (data[0] % 2 == 0) {
        h2o_req_t req;
        memset(&req, 0, sizeof(req));
        h2o_mem_init_pool(&req.pool);
        char *path = malloc(len + 1);
        path[0] = '?';
        memcpy(path + 1, in, len);
        req.path = h2o_iovec_init(path, len + 1);
        req.query_at = 0;
        const char *twice;
        ok = od_batch_form_query(&form, &req, &twice) == 0;
        h2o_mem_clear_pool(&req.pool);
        free(path);
    } else {
        const char *nl = memchr(in, '\n', len), *b;
        size_t ctl = nl ? (size_t)(nl - in) : len, blen;
        const char *body = nl ? nl + 1 : in + len;
        if (od_mp_boundary(in, ctl, &b, &blen) != 0)
            b = "XyZ", blen = 3;
        const char *err = NULL;
        int rc = od_mp_parse(body, (size_t)(in + len - body), b, blen, od_batch_form_part, &form, &err);
        /* the handler answers 400 for a field that is not UTF-8, then for a malformed or repeated one */
        CHECK(form.bad == NULL || strcmp(form.bad, "file_name") == 0 || strcmp(form.bad, "scenario") == 0 ||
              strstr("start_at caller_id calling_windows retry_on retry_max_attempts retry_delay_s pacing_per_min "
                     "spend_cap_micros",
                     form.bad) != NULL);
        ok = rc == 0 && form.bad == NULL && form.dup == NULL && form.have_file;
    }
    if (ok) {
        od_batch_problem_t p;
        if (od_batch_form_check(&form, NOW_US, &p) != 0)
            problem_ok(&p);
        else
            settings_ok(&form);
    }
    od_batch_form_free(&form);
    return 0;
}
