/*
 * CSV batches (docs/batches.md).
 *
 * Upload: the settings are checked on the loop; the file's structure (the
 * file-level problems) on a worker thread (od_batch_file_check, ~20 ms for
 * 100,000 rows); then one statement, od_batch_create, decides idempotency,
 * the rate limit and the project's rules and stores the batch, `validating`,
 * with its file. That is the answer (201).
 *
 * Validation, after the answer: every row is read on a worker thread
 * (od_batch_file_read: phones, duplicates, metadata — ~1 s for 100,000 rows)
 * and one statement, od_batch_import, on the ingress's own import connection,
 * stores the rows and creates the calls. One batch.created message tells the
 * scheduler to sweep the new calls in; PostgreSQL is what it dispatches from.
 * The batch is this ingress's for a lease; if it dies first, another copy
 * takes the batch over from PostgreSQL (od_batch_import_claim, every 2 s).
 *
 * results.csv: streamed page by page (statement batch_results, rows already
 * CSV-encoded at upload), one page fetched ahead while h2o sends the last.
 */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch_file.h"
#include "ingress_int.h"
#include "od/core.h"
#include "od/utf8.h"
#include "od/log.h"
#include "od/multipart.h"
#include "od/phone.h"
#include "od/retry.h"
#include "od/rfc3339.h"
#include "od/window.h"

#define RESULTS_PAGE 20000 /* rows per batch_results query */
#define BATCH_CLAIM_MS 2000 /* how often an ingress looks for a batch left validating */
#define START_PAST_US (60LL * 1000000)
#define START_AHEAD_US (30LL * 86400 * 1000000)

struct batch_job {
    ctx_t *ctx;              /* the request, until the batch is stored */
    ingress_t *in;           /* the validation, after */
    /* upload */
    uv_work_t work;
    char *file;
    size_t file_len;
    char *file_name, *scenario, *caller_id, *start_at;
    char *windows; /* calling_windows: as sent, then od_window_parse's canonical form */
    char *retry_on, *retry_max, *retry_delay; /* the retry policy's fields as sent (NULL: not sent) */
    int64_t pacing; /* 0: the default */
    int64_t spend_cap; /* spend_cap_micros: 0 none, -1 invalid */
    od_retry_policy_t retry;
    size_t max_rows;
    od_batch_file_t bf;
    int rc;
    char req_hash[65];
    char batch_id[37];
    char *head;          /* od_batch_create's parameter, the settings, open for the file's structure */
    /* validation */
    int64_t started_ms, store_ms; /* when it started, when its statement was sent */
    int taken_over;      /* from another ingress (on_claimed) */
    /* results.csv */
    od_http_stream_t *stream;
    int64_t after;       /* last row sent or fetched */
    int query_inflight;  /* a batch_results page is on its way */
    int ready;           /* h2o took the last chunk: the next may go */
    int gone;            /* the client went away */
    int have_page, page_final;
    int failed;          /* a page could not be read: the answer ends as failed */
    od_buf_t page;
};

static struct {
    od_metric_t *created, *validated, *rows, *upload_seconds, *validate_seconds;
} m;

void ingress__batch_job_free(batch_job_t *job)
{
    free(job->file);
    free(job->file_name);
    free(job->scenario);
    free(job->caller_id);
    free(job->start_at);
    free(job->windows);
    free(job->retry_on);
    free(job->retry_max);
    free(job->retry_delay);
    free(job->head);
    od_batch_file_free(&job->bf);
    od_buf_free(&job->page);
    free(job);
}

static batch_job_t *job_of(ctx_t *ctx)
{
    if (ctx->job == NULL) {
        ctx->job = od_calloc(1, sizeof(batch_job_t));
        ctx->job->ctx = ctx;
    }
    return ctx->job;
}

static void field_problem(ctx_t *ctx, int status, const char *code, const char *field, const char *detail)
{
    od_buf_t e = OD_BUF_INIT;
    od_buf_printf(&e, "[{\"field\":\"%s\",\"code\":\"%s\",\"message\":", field, code);
    od_buf_json_str(&e, detail, strlen(detail));
    od_buf_puts(&e, "}]");
    ingress__reply_problem(ctx, status, code, detail, e.base);
    od_buf_free(&e);
    ingress__ctx_free(ctx);
}

/* ---- upload: reading the request ---- */

typedef struct form {
    batch_job_t *job;
    int have_file;
    const char *dup; /* a field sent twice */
    const char *bad; /* a field (or the file's name) that is not UTF-8 without NUL */
} form_t;

/* A whole number from 1 to max as sent, else -1 */
static int64_t parse_count(const char *v, long long max)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    return (*v == '\0' || *end != '\0' || errno != 0 || n < 1 || n > max) ? -1 : n;
}

#define FILE_NAME_MAX 255                /* characters of file_name */
#define PACING_MAX 1000000               /* pacing_per_min (else 422 invalid_pacing) */
#define SPEND_CAP_MAX 1000000000000000LL /* spend_cap_micros: a billion currency units (else 422 invalid_spend_cap) */

/* A numeric setting into the job: pacing_per_min or spend_cap_micros (-1 when invalid). 0 if `name` is neither. */
static int number_setting(batch_job_t *job, const char *name, size_t name_len, const char *v)
{
    if (name_len == 14 && memcmp(name, "pacing_per_min", 14) == 0)
        job->pacing = parse_count(v, PACING_MAX);
    else if (name_len == 16 && memcmp(name, "spend_cap_micros", 16) == 0)
        job->spend_cap = parse_count(v, SPEND_CAP_MAX);
    else
        return 0;
    return 1;
}

/* The text settings of an upload, as form fields or query parameters (docs/batches.md) */
static const char *const text_settings[] = {"scenario", "start_at", "caller_id", "calling_windows",
                                            "retry_on", "retry_max_attempts", "retry_delay_s"};

/* Where the text setting text_settings[i] is kept */
static char **text_setting(batch_job_t *job, size_t i)
{
    char **const slots[] = {&job->scenario, &job->start_at,  &job->caller_id,   &job->windows,
                            &job->retry_on, &job->retry_max, &job->retry_delay};
    return slots[i];
}

static const char *const number_settings[] = {"pacing_per_min", "spend_cap_micros"};

/* The static name of a setting called name[0..len), or NULL for a field we do not read */
static const char *setting_name(const char *name, size_t len)
{
    for (size_t i = 0; i < OD_ARRAY_SIZE(text_settings) + OD_ARRAY_SIZE(number_settings); i++) {
        const char *s = i < OD_ARRAY_SIZE(text_settings) ? text_settings[i]
                                                         : number_settings[i - OD_ARRAY_SIZE(text_settings)];
        if (len == strlen(s) && memcmp(name, s, len) == 0)
            return s;
    }
    return NULL;
}

static int on_part(void *arg, const od_mp_part_t *p)
{
    form_t *f = arg;
    batch_job_t *job = f->job;
    if (p->name_len == 4 && memcmp(p->name, "file", 4) == 0) {
        if (f->have_file) {
            f->dup = "file";
            return 1;
        }
        f->have_file = 1;
        job->file = od_malloc(p->len + 1);
        memcpy(job->file, p->data, p->len);
        job->file[p->len] = '\0';
        job->file_len = p->len;
        if (p->filename != NULL) {
            if (od_utf8_check(p->filename, p->filename_len) != 0) {
                f->bad = "file_name";
                return 1;
            }
            job->file_name = od_strndup(p->filename, p->filename_len);
        }
        return 0;
    }
    if (od_utf8_check(p->data, p->len) != 0) {
        f->bad = setting_name(p->name, p->name_len); /* fields we do not read are ignored, whatever they hold */
        return f->bad != NULL;
    }
    char *v = od_strndup(p->data, p->len);
    int numeric = number_setting(job, p->name, p->name_len, v);
    free(v);
    if (numeric)
        return 0;
    for (size_t i = 0; i < OD_ARRAY_SIZE(text_settings); i++) {
        if (p->name_len != strlen(text_settings[i]) || memcmp(p->name, text_settings[i], p->name_len) != 0)
            continue;
        char **slot = text_setting(job, i);
        if (*slot != NULL) {
            f->dup = text_settings[i];
            return 1;
        }
        *slot = od_strndup(p->data, p->len);
        return 0;
    }
    return 0; /* unknown parts are ignored, as browsers send extra fields */
}

/*
 * The settings from the query string: all of them for a text/csv body; for a
 * form, those it does not hold as fields (a setting given both ways is 400, so
 * that no value sent is silently ignored). 0, or -1 after answering.
 */
static int settings_from_query(ctx_t *ctx, h2o_req_t *req)
{
    batch_job_t *job = ctx->job;
    const char *twice = NULL;
    int bad = 0;
    char *v;
    for (size_t i = 0; i < OD_ARRAY_SIZE(text_settings); i++)
        if ((v = od_http_query(req, text_settings[i], &bad)) != NULL) {
            if (*text_setting(job, i) != NULL)
                twice = text_settings[i];
            else
                *text_setting(job, i) = od_strdup(v);
        }
    if ((v = od_http_query(req, "file_name", &bad)) != NULL) {
        if (job->file_name != NULL)
            twice = "file_name";
        else
            job->file_name = od_strdup(v);
    }
    if ((v = od_http_query(req, "pacing_per_min", &bad)) != NULL) {
        if (job->pacing != 0)
            twice = "pacing_per_min";
        number_setting(job, "pacing_per_min", 14, v);
    }
    if ((v = od_http_query(req, "spend_cap_micros", &bad)) != NULL) {
        if (job->spend_cap != 0)
            twice = "spend_cap_micros";
        number_setting(job, "spend_cap_micros", 16, v);
    }
    if (bad) {
        ingress__bad_query(ctx);
        return -1;
    }
    if (twice != NULL) {
        ingress__bad_param(ctx, twice, "given both as a form field and as a query parameter");
        return -1;
    }
    return 0;
}

/* A text/csv body is the file */
static void file_from_body(batch_job_t *job, h2o_req_t *req)
{
    job->file = od_malloc(req->entity.len + 1);
    if (req->entity.len > 0)
        memcpy(job->file, req->entity.base, req->entity.len);
    job->file[req->entity.len] = '\0';
    job->file_len = req->entity.len;
}

/* The settings checked in memory (the project's rules are PostgreSQL's). 0, or -1 after answering. */
static int check_settings(ctx_t *ctx)
{
    batch_job_t *job = ctx->job;
    if (job->scenario == NULL || job->scenario[0] == '\0') {
        field_problem(ctx, 422, "missing_field", "scenario", "scenario is required");
        return -1;
    }
    if (job->file_name != NULL && ingress__utf8_chars(job->file_name, strlen(job->file_name)) > FILE_NAME_MAX) {
        ingress__bad_param(ctx, "file_name", "file_name is longer than 255 characters");
        return -1;
    }
    if (strlen(job->scenario) > 64) {
        field_problem(ctx, 422, "unknown_scenario", "scenario", "the project has no scenario with this name");
        return -1;
    }
    if (job->pacing < 0) {
        field_problem(ctx, 422, "invalid_pacing", "pacing_per_min", "pacing_per_min must be an integer of at least 1");
        return -1;
    }
    if (job->spend_cap < 0) {
        field_problem(ctx, 422, "invalid_spend_cap", "spend_cap_micros",
                      "spend_cap_micros must be a whole number of micro-units from 1 to 10^15");
        return -1;
    }
    od_retry_error_t rerr;
    if (od_retry_policy_parse(job->retry_on, job->retry_max, job->retry_delay, &job->retry, &rerr) != 0) {
        field_problem(ctx, 422, rerr.code, rerr.field, rerr.detail);
        return -1;
    }
    if (job->caller_id != NULL) {
        char e164[OD_PHONE_E164_SIZE];
        if (od_phone_parse_e164(job->caller_id, strlen(job->caller_id), e164, NULL) != 0) {
            field_problem(ctx, 422, "caller_id_not_verified", "caller_id",
                          "caller_id must be one of the project's verified numbers");
            return -1;
        }
        free(job->caller_id);
        job->caller_id = od_strdup(e164);
    }
    if (job->start_at != NULL) {
        int64_t us, now = od_now_us();
        char ts[OD_RFC3339_BUF_SIZE];
        if (od_rfc3339_parse(job->start_at, strlen(job->start_at), &us, NULL) != 0) {
            field_problem(ctx, 422, "invalid_datetime", "start_at",
                          "start_at must be an RFC 3339 time, e.g. 2026-11-23T09:00:00Z");
            return -1;
        }
        if (us < now - START_PAST_US) {
            field_problem(ctx, 422, "start_at_in_past", "start_at", "start_at is more than 60 s in the past");
            return -1;
        }
        if (us > now + START_AHEAD_US) {
            field_problem(ctx, 422, "start_at_too_far", "start_at", "start_at is more than 30 days ahead");
            return -1;
        }
        od_rfc3339_format(us, ts);
        free(job->start_at);
        job->start_at = od_strdup(ts);
    }
    if (job->windows != NULL) {
        char *canonical, err[256], field[64];
        if (od_window_parse(job->windows, strlen(job->windows), "calling_windows", &canonical, err, sizeof err, field,
                            sizeof field) != 0) {
            field_problem(ctx, 422, "invalid_calling_windows", field, err);
            return -1;
        }
        free(job->windows);
        job->windows = canonical;
    }
    return 0;
}

/* ---- upload: the worker thread ---- */

static void hash_str(EVP_MD_CTX *md, const char *s)
{
    EVP_DigestUpdate(md, s ? s : "", s ? strlen(s) + 1 : 1);
}

/* The file's structure (the answer's file-level problems) and the request's hash. */
static void on_check(uv_work_t *w)
{
    batch_job_t *job = w->data;
    job->rc = od_batch_file_check(job->file, job->file_len, job->max_rows, &job->bf);
    /* the request as a client would retry it: the settings and the file, not the multipart framing */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[32];
    unsigned int dlen;
    char pacing[24];
    snprintf(pacing, sizeof(pacing), "%lld", (long long)job->pacing);
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    hash_str(md, job->scenario);
    hash_str(md, pacing);
    hash_str(md, job->start_at);
    hash_str(md, job->caller_id);
    hash_str(md, job->file_name);
    if (job->windows != NULL) /* only when sent: the hashes of uploads without them stay as they were */
        hash_str(md, job->windows);
    if (job->spend_cap > 0) { /* likewise */
        char cap[24];
        snprintf(cap, sizeof(cap), "cap:%lld", (long long)job->spend_cap);
        hash_str(md, cap);
    }
    if (job->retry_on != NULL || job->retry_max != NULL || job->retry_delay != NULL) {
        /* likewise */
        hash_str(md, job->retry_on);
        hash_str(md, job->retry_max);
        hash_str(md, job->retry_delay);
    }
    EVP_DigestUpdate(md, job->file, job->file_len);
    EVP_DigestFinal_ex(md, d, &dlen);
    EVP_MD_CTX_free(md);
    od_hex(d, sizeof(d), job->req_hash);
}

static void on_created(void *arg, int status, PGresult *res);

static void on_check_done(uv_work_t *w, int status)
{
    batch_job_t *job = w->data;
    ctx_t *ctx = job->ctx;
    ingress_t *in = ctx->in;
    if (status != 0) {
        ingress__reply_unavailable(ctx);
        ingress__ctx_free(ctx);
        return;
    }
    if (job->rc != 0) {
        ingress__reply_problem(ctx, job->bf.status, job->bf.code, job->bf.detail, NULL);
        ingress__ctx_free(ctx);
        return;
    }
    /* the settings, then what the file's structure says */
    od_buf_t q = OD_BUF_INIT;
    od_buf_puts(&q, job->head);
    od_buf_puts(&q, ",\"columns\":");
    od_buf_append(&q, job->bf.columns.base, job->bf.columns.len);
    od_buf_puts(&q, ",\"header_line\":");
    od_buf_json_str(&q, job->bf.header_line.base ? job->bf.header_line.base : "", job->bf.header_line.len);
    od_buf_printf(&q, ",\"total_rows\":%zu,\"request_hash\":\"%s\",\"owner\":\"%s\"}", job->bf.total, job->req_hash,
                  in->batch_owner);
    od_batch_file_free(&job->bf);
    char actor[160];
    ingress__actor(ctx, actor, sizeof(actor));
    const char *params[3] = {q.base, job->file, actor};
    int rc = od_pg_query(in->pg, "batch_create", 3, params, on_created, ctx);
    od_buf_free(&q);
    if (rc != 0) {
        ingress__reply_unavailable(ctx);
        ingress__ctx_free(ctx);
    }
}

/* ---- validation: every row, then the calls, after the answer ---- */

static void on_published(void *arg, rd_kafka_resp_err_t err)
{
    (void)arg;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        od_warn("batch.created publish failed (%s); the scheduler's sweep finds the calls anyway",
                rd_kafka_err2str(err));
}

static void import_end(batch_job_t *job)
{
    ingress_t *in = job->in;
    in->batch_imports--;
    if (job->taken_over)
        in->batch_claiming = 0;
    ingress__batch_job_free(job);
}

static void on_imported(void *arg, int status, PGresult *res)
{
    batch_job_t *job = arg;
    ingress_t *in = job->in;
    if (status != OD_PG_OK) {
        od_error("batch %s: storing its rows failed (%s); validated again when its lease runs out", job->batch_id,
                 res ? od_pg_errmsg(res) : "database unavailable");
        import_end(job);
        return;
    }
    json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    const char *what = json_string_value(json_object_get(r, "r"));
    const char *project = json_string_value(json_object_get(r, "project_id"));
    if (what != NULL && strcmp(what, "imported") == 0 && project != NULL && strlen(project) == 36) {
        int64_t now = od_mono_ms();
        json_int_t accepted = json_integer_value(json_object_get(r, "accepted"));
        json_int_t total = accepted + json_integer_value(json_object_get(r, "rejected"));
        od_info("batch %s validated: %lld rows (%lld accepted), read in %lld ms, stored in %lld ms", job->batch_id,
                (long long)total, (long long)accepted, (long long)(job->store_ms - job->started_ms),
                (long long)(now - job->store_ms));
        od_metric_add(m.validated, 1);
        od_metric_add(m.rows, (double)total);
        od_metric_observe(m.validate_seconds, (double)(now - job->started_ms) / 1000.0);
        char msg[256];
        int n = snprintf(msg, sizeof(msg),
                         "{\"v\":1,\"type\":\"batch.created\",\"batch_id\":\"%s\",\"project_id\":\"%s\"}",
                         job->batch_id, project);
        od_kprod_send(in->kp, in->topic_requested, project, 36, msg, (size_t)n, on_published, NULL);
    } else {
        od_info("batch %s: validated elsewhere, or deleted; nothing stored", job->batch_id);
    }
    json_decref(r);
    import_end(job);
}

/* Every row on a worker thread (phones, duplicates, metadata): ~10 µs a row. */
static void on_import_read(uv_work_t *w)
{
    batch_job_t *job = w->data;
    char prefix[160];
    snprintf(prefix, sizeof(prefix), "{\"id\":\"%s\",\"owner\":\"%s\",\"rows\":", job->batch_id,
             job->in->batch_owner);
    job->rc = od_batch_file_read(job->file, job->file_len, SIZE_MAX, prefix, &job->bf);
    if (job->rc == 0)
        od_buf_puts(&job->bf.rows, "}");
    free(job->file);
    job->file = NULL;
}

static void on_import_read_done(uv_work_t *w, int status)
{
    batch_job_t *job = w->data;
    job->store_ms = od_mono_ms();
    if (status != 0 || job->rc != 0) {
        /* not for a file whose structure was checked: logged, and tried again when the lease runs out */
        od_error("batch %s: validation failed: %s", job->batch_id, status ? uv_strerror(status) : job->bf.detail);
        import_end(job);
        return;
    }
    const char *params[1] = {job->bf.rows.base};
    int rc = od_pg_query(job->in->pg_import, "batch_import", 1, params, on_imported, job);
    od_batch_file_free(&job->bf); /* the pool copied it */
    if (rc != 0) {
        od_warn("batch %s: the database is unreachable; validated again when its lease runs out", job->batch_id);
        import_end(job);
    }
}

/* Validates the batch whose file job holds; the job is the validation's from now on. */
static void import_start(ingress_t *in, batch_job_t *job)
{
    in->batch_imports++;
    job->in = in;
    job->ctx = NULL;
    job->started_ms = od_mono_ms();
    job->work.data = job;
    if (uv_queue_work(in->svc->loop, &job->work, on_import_read, on_import_read_done) != 0) {
        od_error("batch %s: no worker thread; validated again when its lease runs out", job->batch_id);
        import_end(job);
    }
}

/* A batch another ingress left validating (it died, or lost the database): this one takes it over. */
static void on_claimed(void *arg, int status, PGresult *res)
{
    ingress_t *in = arg;
    if (status != OD_PG_OK || PQntuples(res) == 0) {
        if (status == OD_PG_EQUERY)
            od_error("batch claim: %s", od_pg_errmsg(res));
        in->batch_claiming = 0;
        return;
    }
    batch_job_t *job = od_calloc(1, sizeof(*job));
    job->taken_over = 1;
    snprintf(job->batch_id, sizeof(job->batch_id), "%s", PQgetvalue(res, 0, 0));
    job->file_len = (size_t)PQgetlength(res, 0, 1);
    job->file = od_malloc(job->file_len + 1);
    memcpy(job->file, PQgetvalue(res, 0, 1), job->file_len + 1);
    od_info("batch %s: taking over its validation (%zu bytes), left unfinished by another ingress", job->batch_id,
            job->file_len);
    import_start(in, job);
}

static void on_claim_timer(uv_timer_t *t)
{
    ingress_t *in = t->data;
    if (in->batch_claiming)
        return;
    const char *params[1] = {in->batch_owner};
    if (od_pg_query(in->pg_import, "batch_claim", 1, params, on_claimed, in) == 0)
        in->batch_claiming = 1;
}

/* ---- upload: the answer ---- */

static void on_created(void *arg, int status, PGresult *res)
{
    ctx_t *ctx = arg;
    batch_job_t *job = ctx->job;
    if (status != OD_PG_OK) {
        ingress__reply_failed(ctx, status, res, "batch create");
        ingress__ctx_free(ctx);
        return;
    }
    json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    ctx->rl = json_incref(json_object_get(r, "rl"));
    const char *what = json_string_value(json_object_get(r, "r"));
    const char *body = json_string_value(json_object_get(r, "body"));
    const char *code = json_string_value(json_object_get(r, "code"));
    int http = (int)json_integer_value(json_object_get(r, "status"));
    h2o_req_t *req = ingress__req(ctx);
    if (what != NULL && strcmp(what, "in_use") == 0) {
        ingress__reply_problem(ctx, 409, "idempotency_key_in_use",
                               "an upload with this Idempotency-Key is still being processed; retry shortly", NULL);
    } else if (what != NULL && strcmp(what, "reused") == 0) {
        ingress__reply_problem(ctx, 422, "idempotency_key_reused",
                               "this Idempotency-Key was used with a different upload", NULL);
    } else if (what != NULL && strcmp(what, "replay") == 0) {
        if (req != NULL)
            od_http_add_header(req, "idempotent-replayed", "true");
        ingress__reply_json(ctx, http ? http : 201, body ? body : "{}");
    } else if (code != NULL) {
        const char *field = json_string_value(json_object_get(r, "field"));
        const char *detail = json_string_value(json_object_get(r, "detail"));
        if (field != NULL) {
            field_problem(ctx, http, code, field, detail ? detail : code); /* frees ctx */
            json_decref(r);
            return;
        }
        ingress__reply_problem(ctx, http, code,
                               detail ? detail : http == 429 ? "too many requests for this API key; see Retry-After"
                                                             : code,
                               NULL);
    } else if (http == 201 && body != NULL) {
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/batches/%s", job->batch_id);
        if (req != NULL)
            od_http_add_header(req, "location", loc);
        ingress__reply_json(ctx, 201, body);
        od_metric_add(m.created, 1);
        od_metric_observe(m.upload_seconds, (double)(od_mono_ms() - ctx->started_ms) / 1000.0);
        /* the batch is stored: its rows are validated from here, whatever becomes of the request */
        ctx->job = NULL;
        import_start(ctx->in, job);
    } else {
        ingress__reply_unavailable(ctx);
    }
    json_decref(r);
    ingress__ctx_free(ctx);
}

void ingress__create_batch(ctx_t *ctx, h2o_req_t *req)
{
    ingress_t *in = ctx->in;
    batch_job_t *job = job_of(ctx);
    job->max_rows = (size_t)in->conf->batch_max_rows;
    if (ingress__idem_header(ctx, req) != 0)
        return;
    h2o_iovec_t ct = od_http_header(req, "content-type");
    const char *boundary;
    size_t blen;
    if (ct.base != NULL && ct.len >= 19 && strncasecmp(ct.base, "multipart/form-data", 19) == 0) {
        if (od_mp_boundary(ct.base, ct.len, &boundary, &blen) != 0) {
            ingress__reply_problem(ctx, 400, "invalid_multipart", "the multipart Content-Type has no boundary", NULL);
            ingress__ctx_free(ctx);
            return;
        }
        form_t f = {job, 0, NULL, NULL};
        const char *err = NULL;
        int rc = od_mp_parse(req->entity.base ? req->entity.base : "", req->entity.len, boundary, blen, on_part, &f,
                             &err);
        if (f.bad != NULL) {
            ingress__bad_param(ctx, f.bad, "the field is not UTF-8 text without NUL");
            return;
        }
        if (rc < 0 || f.dup != NULL) {
            char detail[160];
            if (f.dup != NULL)
                snprintf(detail, sizeof(detail), "the form has the field \"%s\" twice", f.dup);
            else
                snprintf(detail, sizeof(detail), "the multipart body is malformed: %s", err ? err : "?");
            ingress__reply_problem(ctx, 400, "invalid_multipart", detail, NULL);
            ingress__ctx_free(ctx);
            return;
        }
        if (!f.have_file) {
            field_problem(ctx, 422, "missing_file", "file", "send the CSV as the form's \"file\" part");
            return;
        }
        if (settings_from_query(ctx, req) != 0)
            return;
    } else if (ct.base != NULL && ct.len >= 8 && strncasecmp(ct.base, "text/csv", 8) == 0) {
        if (settings_from_query(ctx, req) != 0)
            return;
        file_from_body(job, req);
    } else {
        ingress__reply_problem(ctx, 415, "unsupported_media_type",
                               "send the CSV as multipart/form-data (part \"file\") or as a text/csv body", NULL);
        ingress__ctx_free(ctx);
        return;
    }
    if (check_settings(ctx) != 0)
        return;
    od_uuid7(job->batch_id);
    json_t *p = json_pack("{ss ss sI ss ss so so so ss ss?}", "key_id", ctx->key.key_id, "project_id",
                          ctx->key.project_id, "requests_per_hour", (json_int_t)ctx->key.requests_per_hour, "id",
                          job->batch_id, "scenario", job->scenario, "pacing_per_min",
                          job->pacing > 0 ? json_integer(job->pacing) : json_null(), "start_at",
                          job->start_at ? json_string(job->start_at) : json_null(), "caller_id",
                          job->caller_id ? json_string(job->caller_id) : json_null(), "file_name",
                          job->file_name ? job->file_name : "upload.csv", "idem_key", ctx->idem[0] ? ctx->idem : NULL);
    if (job->windows != NULL)
        json_object_set_new(p, "calling_windows", json_loads(job->windows, 0, NULL));
    if (job->spend_cap > 0)
        json_object_set_new(p, "spend_cap_micros", json_integer(job->spend_cap));
    const od_retry_policy_t *rp = &job->retry;
    json_object_set_new(p, "retry_on", rp->on >= 0 ? json_loads(od_retry_on_json(rp->on), 0, NULL) : json_null());
    json_object_set_new(p, "retry_max_attempts", rp->max_attempts > 0 ? json_integer(rp->max_attempts) : json_null());
    json_object_set_new(p, "retry_delay_s", rp->delay_s > 0 ? json_integer(rp->delay_s) : json_null());
    job->head = json_dumps(p, JSON_COMPACT);
    json_decref(p);
    job->head[strlen(job->head) - 1] = '\0'; /* without its closing brace: on_check_done adds to it */
    job->work.data = job;
    if (uv_queue_work(in->svc->loop, &job->work, on_check, on_check_done) != 0) {
        ingress__reply_unavailable(ctx);
        ingress__ctx_free(ctx);
    }
}

/* ---- results.csv ---- */

static void results_fetch(ctx_t *ctx);

/* Ends the stream's context once nothing refers to it. */
static void results_maybe_free(ctx_t *ctx)
{
    batch_job_t *job = ctx->job;
    if (!job->query_inflight && (job->gone || job->stream == NULL))
        ingress__ctx_free(ctx);
}

static void results_try_send(ctx_t *ctx)
{
    batch_job_t *job = ctx->job;
    if (job->gone || !job->ready || !job->have_page)
        return;
    job->ready = 0;
    job->have_page = 0;
    if (job->failed) {
        od_http_stream_abort(job->stream);
        job->stream = NULL;
        results_maybe_free(ctx);
        return;
    }
    int final = job->page_final;
    od_http_stream_send(job->stream, job->page.base ? job->page.base : "", job->page.len, final);
    od_buf_reset(&job->page);
    if (final) {
        job->stream = NULL; /* freed with the request; no callback comes any more */
        results_maybe_free(ctx);
    } else {
        results_fetch(ctx); /* the next page, while h2o sends this one */
    }
}

/* ",<ms as seconds with 3 decimals>" of a column in ms (nothing when NULL) */
static void results_seconds(od_buf_t *b, const PGresult *res, int i, int col)
{
    od_buf_puts(b, ",");
    if (!PQgetisnull(res, i, col)) {
        long long ms = strtoll(PQgetvalue(res, i, col), NULL, 10);
        od_buf_printf(b, "%lld.%03lld", ms / 1000, ms % 1000);
    }
}

/* ",<RFC 3339>" of a column in µs since the epoch (nothing when NULL) */
static void results_time(od_buf_t *b, const PGresult *res, int i, int col)
{
    od_buf_puts(b, ",");
    if (!PQgetisnull(res, i, col)) {
        char ts[OD_RFC3339_BUF_SIZE];
        od_buf_append(b, ts, od_rfc3339_format(strtoll(PQgetvalue(res, i, col), NULL, 10), ts));
    }
}

/*
 * One line of results.csv from a row of the batch_results statement: the
 * uploaded cells, then call_id,status,final_state,outcome,goal_completed,
 * duration_s,cost_micros,ended_at,error,attempts of the row's latest
 * attempt, then recording_duration_s,recording_sha256,recording_deleted_at
 * of its recording. Those values need no quoting (ids, codes, numbers, hex,
 * times).
 */
static void results_line(od_buf_t *b, const PGresult *res, int i)
{
    od_buf_append(b, PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1));
    for (int col = 2; col <= 5; col++) {
        od_buf_puts(b, ",");
        od_buf_append(b, PQgetvalue(res, i, col), (size_t)PQgetlength(res, i, col));
    }
    od_buf_puts(b, ",");
    if (!PQgetisnull(res, i, 6))
        od_buf_puts(b, PQgetvalue(res, i, 6)[0] == 't' ? "true" : "false");
    results_seconds(b, res, i, 7);
    od_buf_puts(b, ",");
    od_buf_append(b, PQgetvalue(res, i, 8), (size_t)PQgetlength(res, i, 8));
    results_time(b, res, i, 9);
    od_buf_puts(b, ",");
    od_buf_append(b, PQgetvalue(res, i, 10), (size_t)PQgetlength(res, i, 10));
    od_buf_puts(b, ",");
    od_buf_append(b, PQgetvalue(res, i, 11), (size_t)PQgetlength(res, i, 11));
    results_seconds(b, res, i, 12);
    od_buf_puts(b, ",");
    od_buf_append(b, PQgetvalue(res, i, 13), (size_t)PQgetlength(res, i, 13));
    results_time(b, res, i, 14);
    od_buf_puts(b, "\r\n");
}

static void on_results_page(void *arg, int status, PGresult *res)
{
    ctx_t *ctx = arg;
    batch_job_t *job = ctx->job;
    job->query_inflight = 0;
    if (job->gone) {
        results_maybe_free(ctx);
        return;
    }
    if (status != OD_PG_OK) {
        /* the status line is out: end the body as failed (the client sees an incomplete transfer, not a short file) */
        od_error("results.csv of %s: %s", job->batch_id, res ? od_pg_errmsg(res) : "database unavailable");
        job->failed = 1;
        job->have_page = 1;
        results_try_send(ctx);
        return;
    }
    int n = PQntuples(res);
    for (int i = 0; i < n; i++)
        results_line(&job->page, res, i);
    if (n > 0)
        job->after = strtoll(PQgetvalue(res, n - 1, 0), NULL, 10);
    job->page_final = n < RESULTS_PAGE;
    job->have_page = 1;
    results_try_send(ctx);
}

static void results_fetch(ctx_t *ctx)
{
    batch_job_t *job = ctx->job;
    char after[24], lim[24];
    snprintf(after, sizeof(after), "%lld", (long long)job->after);
    snprintf(lim, sizeof(lim), "%d", RESULTS_PAGE);
    const char *params[3] = {job->batch_id, after, lim};
    if (od_pg_query(ctx->in->pg, "batch_results", 3, params, on_results_page, ctx) == 0)
        job->query_inflight = 1;
    else
        on_results_page(ctx, OD_PG_EUNAVAIL, NULL);
}

static void on_results_proceed(void *arg)
{
    ctx_t *ctx = arg;
    ctx->job->ready = 1;
    results_try_send(ctx);
}

static void on_results_gone(void *arg)
{
    ctx_t *ctx = arg;
    ctx->job->gone = 1;
    ctx->job->stream = NULL;
    results_maybe_free(ctx);
}

static void on_results_head(void *arg, int status, PGresult *res)
{
    ctx_t *ctx = arg;
    batch_job_t *job = ctx->job;
    if (status != OD_PG_OK) {
        ingress__reply_failed(ctx, status, res, "results.csv");
        ingress__ctx_free(ctx);
        return;
    }
    json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    int http = (int)json_integer_value(json_object_get(r, "status"));
    const char *head = json_string_value(json_object_get(r, "body"));
    ctx->rl = json_incref(json_object_get(r, "rl"));
    h2o_req_t *req = ingress__req(ctx);
    if (http != 200 || head == NULL || req == NULL) {
        const char *code = json_string_value(json_object_get(r, "code"));
        ingress__reply_problem(ctx, http ? http : 503, code ? code : "service_unavailable",
                               http == 404   ? "no such batch in this project"
                               : http == 409 ? "the batch is still being validated; its results are there once its "
                                               "status is no longer validating"
                               : http == 429 ? "too many requests for this API key; see Retry-After"
                                             : "the results could not be read",
                               NULL);
        json_decref(r);
        ingress__ctx_free(ctx);
        return;
    }
    char disp[96];
    snprintf(disp, sizeof(disp), "attachment; filename=\"batch-%s-results.csv\"", job->batch_id);
    od_http_add_header(req, "content-disposition", disp);
    ingress__ratelimit_headers(req, ctx->rl);
    ctx->answered = 1;
    job->stream = od_http_stream_start(req, 200, "text/csv; charset=utf-8", on_results_proceed, on_results_gone, ctx);
    od_buf_puts(&job->page, head);
    job->have_page = 1;
    job->ready = 1;
    json_decref(r);
    results_try_send(ctx);
}

void ingress__batch_results(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    batch_job_t *job = job_of(ctx);
    if (ingress__path_id(ctx, "batch", job->batch_id) == 0)
        ingress__api_run(ctx, "batch_api", "batch_head", json_pack("{ss}", "id", job->batch_id), on_results_head);
}

/* ---- the others: one od_batch_api statement each ---- */

void ingress__list_batches(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = json_object();
    if (ingress__page_params(ctx, req, args) == 0)
        ingress__api_run(ctx, "batch_api", "list_batches", args, NULL);
}

/* One od_batch_api operation on the batch named by the path. */
static void batch_op(ctx_t *ctx, const char *op)
{
    char id[37];
    if (ingress__path_id(ctx, "batch", id) == 0)
        ingress__api_run(ctx, "batch_api", op, json_pack("{ss}", "id", id), NULL);
}

void ingress__get_batch(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    batch_op(ctx, "get_batch");
}

void ingress__pause_batch(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    batch_op(ctx, "pause_batch");
}

void ingress__resume_batch(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    batch_op(ctx, "resume_batch");
}

void ingress__cancel_batch(ctx_t *ctx, h2o_req_t *req)
{
    char id[37];
    (void)req;
    /* a batch of a million queued calls is a million rows to cancel: not on the request connections */
    if (ingress__path_id(ctx, "batch", id) == 0)
        ingress__api_run_heavy(ctx, "batch_api", "cancel_batch", json_pack("{ss}", "id", id));
}

/* PATCH /v1/batches/{id}: {"spend_cap_micros": n | null} (null: no cap). */
void ingress__update_batch(ctx_t *ctx, h2o_req_t *req)
{
    char id[37];
    if (ingress__path_id(ctx, "batch", id) != 0 || ingress__json_body_type(ctx, req) != 0)
        return;
    json_error_t jerr;
    json_t *root = req->entity.len > 0 ? json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &jerr)
                                       : NULL;
    json_t *cap = json_object_get(root, "spend_cap_micros");
    ingress_errs_t e = INGRESS_ERRS_INIT;
    const char *key;
    json_t *v;
    if (!json_is_object(root) || json_object_size(root) == 0) {
        ingress__err_add(&e, "", "invalid_json", "the body must be a JSON object {\"spend_cap_micros\": n or null}");
    } else {
        json_object_foreach(root, key, v)
        {
            if (strcmp(key, "spend_cap_micros") != 0)
                ingress__err_add(&e, key, "unknown_field", "only spend_cap_micros can be changed");
        }
        /* a whole number written 5.0 is one too (JSON Schema's `integer`) */
        double d = json_is_real(cap) ? json_real_value(cap) : 0;
        if (d >= 1 && d <= (double)SPEND_CAP_MAX && (double)(long long)d == d)
            cap = json_integer((json_int_t)d); /* owned: root's reference is kept below */
        else
            json_incref(cap);
        if (cap != NULL && !json_is_null(cap) &&
            (!json_is_integer(cap) || json_integer_value(cap) < 1 || json_integer_value(cap) > SPEND_CAP_MAX))
            ingress__err_add(&e, "spend_cap_micros", "invalid_spend_cap",
                             "spend_cap_micros must be a whole number of micro-units from 1 to 10^15, or null");
    }
    if (e.first != NULL) {
        json_decref(cap);
        json_decref(root);
        ingress__errs_reply(ctx, &e);
        return;
    }
    json_decref(e.list);
    json_t *args = json_pack("{ss so*}", "id", id, "spend_cap_micros", cap);
    json_decref(root);
    ingress__api_run(ctx, "batch_settings_api", "update", args, NULL);
}

static const od_pg_stmt_t import_stmts[] = {
    {"batch_import", "SELECT od_batch_import($1::jsonb)::text"},
    {"batch_claim", "SELECT id, csv FROM od_batch_import_claim($1)"},
};

void ingress__batches_init(ingress_t *in)
{
    od_http_set_max_entity(in->svc->http, (size_t)in->conf->batch_max_bytes);
    /* validations have their own connection: a 100,000-row import is a few seconds of one statement */
    in->pg_import = od_pg_new(in->svc->loop, "ingress-import", in->conf->common.pg_dsn, 1, import_stmts,
                              OD_ARRAY_SIZE(import_stmts));
    od_instance_id(in->batch_owner, sizeof(in->batch_owner));
    uv_timer_init(in->svc->loop, &in->batch_claim_timer);
    in->batch_claim_timer.data = in;
    uv_timer_start(&in->batch_claim_timer, on_claim_timer, BATCH_CLAIM_MS, BATCH_CLAIM_MS);
    m.created = od_counter("outdial_ingress_batches_created_total", NULL, "CSV batches stored (201, validating)");
    m.validated = od_counter("outdial_ingress_batches_validated_total", NULL,
                             "CSV batches validated by this ingress (rows checked, calls created)");
    m.rows = od_counter("outdial_ingress_batch_rows_total", NULL, "data rows of the CSV batches validated");
    m.upload_seconds = od_histogram("outdial_ingress_batch_upload_seconds", NULL,
                                    "POST /v1/batches: request (whole body received) to 201", od_latency_buckets,
                                    od_latency_nbuckets);
    m.validate_seconds = od_histogram("outdial_ingress_batch_validate_seconds", NULL,
                                      "a batch's validation: rows read and calls stored", od_latency_buckets,
                                      od_latency_nbuckets);
}

void ingress__batches_drain(ingress_t *in)
{
    uv_timer_stop(&in->batch_claim_timer);
}

int ingress__batches_busy(const ingress_t *in)
{
    return in->batch_imports > 0;
}
