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
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "batch_file.h"
#include "batch_form.h"
#include "ingress_int.h"
#include "od/core.h"
#include "od/log.h"
#include "od/multipart.h"
#include "od/rfc3339.h"

#define RESULTS_PAGE 20000 /* rows per batch_results query */
#define BATCH_CLAIM_MS 2000 /* how often an ingress looks for a batch left validating */

struct batch_job {
    ctx_t *ctx;              /* the request, until the batch is stored */
    ingress_t *in;           /* the validation, after */
    /* upload */
    uv_work_t work;
    od_batch_form_t form; /* the settings and the file (file freed once the rows are read) */
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
    od_batch_form_free(&job->form);
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

/* The settings from the query string (od_batch_form_query). 0, or -1 after answering. */
static int settings_from_query(ctx_t *ctx, h2o_req_t *req)
{
    const char *twice;
    int rc = od_batch_form_query(&ctx->job->form, req, &twice);
    if (rc == -1)
        ingress__bad_query(ctx);
    else if (rc == -2)
        ingress__bad_param(ctx, twice, "given both as a form field and as a query parameter");
    return rc == 0 ? 0 : -1;
}

/* A text/csv body is the file */
static void file_from_body(ctx_t *ctx, h2o_req_t *req)
{
    od_batch_form_t *form = &ctx->job->form;
    form->file = od_malloc(req->entity.len + 1);
    if (req->entity.len > 0)
        memcpy(form->file, req->entity.base, req->entity.len);
    form->file[req->entity.len] = '\0';
    form->file_len = req->entity.len;
}

/* The settings checked in memory (the project's rules are PostgreSQL's). 0, or -1 after answering. */
static int check_settings(ctx_t *ctx)
{
    od_batch_problem_t p;
    if (od_batch_form_check(&ctx->job->form, od_now_us(), &p) != 0) {
        if (p.status == 400)
            ingress__bad_param(ctx, p.field, p.detail); /* frees ctx */
        else
            field_problem(ctx, p.status, p.code, p.field, p.detail);
        return -1;
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
    job->rc = od_batch_file_check(job->form.file, job->form.file_len, job->max_rows, &job->bf);
    /* the request as a client would retry it: the settings and the file, not the multipart framing */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char d[32];
    unsigned int dlen;
    char pacing[24];
    snprintf(pacing, sizeof(pacing), "%lld", (long long)job->form.pacing);
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    hash_str(md, job->form.scenario);
    hash_str(md, pacing);
    hash_str(md, job->form.start_at);
    hash_str(md, job->form.caller_id);
    hash_str(md, job->form.file_name);
    if (job->form.windows != NULL) /* only when sent: the hashes of uploads without them stay as they were */
        hash_str(md, job->form.windows);
    if (job->form.spend_cap > 0) { /* likewise */
        char cap[24];
        snprintf(cap, sizeof(cap), "cap:%lld", (long long)job->form.spend_cap);
        hash_str(md, cap);
    }
    if (job->form.retry_on != NULL || job->form.retry_max != NULL || job->form.retry_delay != NULL) {
        /* likewise */
        hash_str(md, job->form.retry_on);
        hash_str(md, job->form.retry_max);
        hash_str(md, job->form.retry_delay);
    }
    EVP_DigestUpdate(md, job->form.file, job->form.file_len);
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
    const char *params[3] = {q.base, job->form.file, actor};
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
    job->rc = od_batch_file_read(job->form.file, job->form.file_len, SIZE_MAX, prefix, &job->bf);
    if (job->rc == 0)
        od_buf_puts(&job->bf.rows, "}");
    free(job->form.file);
    job->form.file = NULL;
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
    job->form.file_len = (size_t)PQgetlength(res, 0, 1);
    job->form.file = od_malloc(job->form.file_len + 1);
    memcpy(job->form.file, PQgetvalue(res, 0, 1), job->form.file_len + 1);
    od_info("batch %s: taking over its validation (%zu bytes), left unfinished by another ingress", job->batch_id,
            job->form.file_len);
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
        const char *err = NULL;
        int rc = od_mp_parse(req->entity.base ? req->entity.base : "", req->entity.len, boundary, blen,
                             od_batch_form_part, &job->form, &err);
        if (job->form.bad != NULL) {
            ingress__bad_param(ctx, job->form.bad, "the field is not UTF-8 text without NUL");
            return;
        }
        if (rc < 0 || job->form.dup != NULL) {
            char detail[160];
            if (job->form.dup != NULL)
                snprintf(detail, sizeof(detail), "the form has the field \"%s\" twice", job->form.dup);
            else
                snprintf(detail, sizeof(detail), "the multipart body is malformed: %s", err ? err : "?");
            ingress__reply_problem(ctx, 400, "invalid_multipart", detail, NULL);
            ingress__ctx_free(ctx);
            return;
        }
        if (!job->form.have_file) {
            field_problem(ctx, 422, "missing_file", "file", "send the CSV as the form's \"file\" part");
            return;
        }
        if (settings_from_query(ctx, req) != 0)
            return;
    } else if (ct.base != NULL && ct.len >= 8 && strncasecmp(ct.base, "text/csv", 8) == 0) {
        if (settings_from_query(ctx, req) != 0)
            return;
        file_from_body(ctx, req);
    } else {
        ingress__reply_problem(ctx, 415, "unsupported_media_type",
                               "send the CSV as multipart/form-data (part \"file\") or as a text/csv body", NULL);
        ingress__ctx_free(ctx);
        return;
    }
    if (check_settings(ctx) != 0)
        return;
    od_uuid7(job->batch_id);
    json_t *p = od_batch_form_json(&job->form);
    json_object_set_new(p, "key_id", json_string(ctx->key.key_id));
    json_object_set_new(p, "project_id", json_string(ctx->key.project_id));
    json_object_set_new(p, "requests_per_hour", json_integer((json_int_t)ctx->key.requests_per_hour));
    json_object_set_new(p, "id", json_string(job->batch_id));
    if (ctx->idem[0])
        json_object_set_new(p, "idem_key", json_string(ctx->idem));
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
    ingress_errs_t e = INGRESS_ERRS_INIT;
    json_t *args = od_batch_patch_body(req->entity.base, req->entity.len, &e);
    if (args == NULL) {
        ingress__errs_reply(ctx, &e);
        return;
    }
    json_decref(e.list);
    json_object_set_new(args, "id", json_string(id));
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
