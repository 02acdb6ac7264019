/*
 * The API of outdial-ingress.
 *
 * A request's life: authenticate (cached key record) → check the scope →
 * the route. POST /v1/calls is validated in memory, then joins the accept
 * group of this loop turn: one statement (od_accept_calls) decides
 * idempotency, rate limits and the project's rules and stores the calls of
 * the whole group in one transaction. Each accepted call is then published
 * to calls.requested; the 202 goes out on its delivery report, or after
 * OUTDIAL_PUBLISH_WAIT_MS — the call is durable in PostgreSQL either way,
 * and the scheduler's sweep finds a call whose publish never happened.
 * Every other endpoint is one statement (od_api) that rate limits and runs
 * the operation.
 */
#include "ingress_int.h"

#include <arpa/inet.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call_request.h"
#include "od/call.h"
#include "od/core.h"
#include "od/log.h"
#include "od/metrics.h"
#include "od/phone.h"
#include "od/rfc3339.h"
#include "od/secret.h"

static struct {
    od_metric_t *accepted, *replays, *rate_limited, *publish_failed, *publish_late, *unavailable, *accept_latency,
        *group_size;
} m;

#define REJECTED_HELP "POST /v1/calls answered with a 4xx problem, by its code (validation, auth, rules, 429)"

static void route_create_call(ctx_t *ctx, h2o_req_t *req);

/*
 * Counts a refused call request under its problem code. The codes are
 * literals of this service (a bounded set); anything else would be a bug and
 * is counted as "other" rather than growing the label's values.
 */
static void count_rejected(const char *code)
{
    size_t n = strspn(code, "abcdefghijklmnopqrstuvwxyz0123456789_");
    char labels[80];
    snprintf(labels, sizeof(labels), "code=\"%s\"", n > 0 && n < 48 && code[n] == '\0' ? code : "other");
    od_metric_add(od_counter("outdial_ingress_calls_rejected_total", labels, REJECTED_HELP), 1);
}

/* ---- answering ---- */

void ingress__ratelimit_headers(h2o_req_t *req, json_t *rl)
{
    if (rl == NULL)
        return;
    char v[160];
    const char *policy = json_string_value(json_object_get(rl, "policy"));
    snprintf(v, sizeof(v), "\"%s\";q=%lld;w=%lld", policy ? policy : "requests",
             (long long)json_integer_value(json_object_get(rl, "limit")),
             (long long)json_integer_value(json_object_get(rl, "window")));
    od_http_add_header(req, "ratelimit-policy", v);
    snprintf(v, sizeof(v), "\"%s\";r=%lld;t=%lld", policy ? policy : "requests",
             (long long)json_integer_value(json_object_get(rl, "remaining")),
             (long long)json_integer_value(json_object_get(rl, "reset")));
    od_http_add_header(req, "ratelimit", v);
    json_t *ra = json_object_get(rl, "retry_after_ms");
    if (ra != NULL && json_integer_value(ra) > 0) {
        snprintf(v, sizeof(v), "%lld", (long long)((json_integer_value(ra) + 999) / 1000));
        od_http_add_header(req, "retry-after", v);
    }
}

void ingress__ctx_free(ctx_t *ctx)
{
    if (ctx->job != NULL)
        ingress__batch_job_free(ctx->job);
    if (ctx->hold != NULL)
        od_http_release(ctx->hold);
    json_decref(ctx->rl);
    json_decref(ctx->meta);
    od_call_request_free(&ctx->creq);
    free(ctx->body);
    free(ctx);
}

/* The request, or NULL if the client went away. */
h2o_req_t *ingress__req(ctx_t *ctx)
{
    return ctx->hold ? od_http_held_req(ctx->hold) : NULL;
}

void ingress__reply(ctx_t *ctx, int status, const char *ctype, const char *body, size_t len)
{
    h2o_req_t *req = ingress__req(ctx);
    ctx->answered = 1;
    if (req == NULL)
        return;
    ingress__ratelimit_headers(req, ctx->rl);
    od_http_send(req, status, ctype, body, len);
}

void ingress__reply_json(ctx_t *ctx, int status, const char *json)
{
    ingress__reply(ctx, status, "application/json", json, strlen(json));
}

void ingress__reply_problem(ctx_t *ctx, int status, const char *code, const char *detail, const char *errors)
{
    h2o_req_t *req = ingress__req(ctx);
    ctx->answered = 1;
    if (status >= 400 && status < 500 && ctx->route != NULL && ctx->route->fn == route_create_call)
        count_rejected(code);
    if (req == NULL)
        return;
    ingress__ratelimit_headers(req, ctx->rl);
    if (status == 503)
        od_http_add_header(req, "retry-after", "1");
    od_http_problem(req, status, code, detail, errors);
}

void ingress__reply_unavailable(ctx_t *ctx)
{
    od_metric_add(m.unavailable, 1);
    ingress__reply_problem(ctx, 503, "service_unavailable", "the database is unavailable; retry shortly", NULL);
}

/* The SQLSTATEs our functions raise for a rule of the domain, and their answers (proto/sql). */
static const struct {
    const char *sqlstate;
    int status;
    const char *code;
    const char *detail;
} domain_errors[] = {
    {"23K01", 422, "too_many_api_keys", "the project has as many active API keys as it may: revoke one first"},
};

void ingress__reply_failed(ctx_t *ctx, int status, const PGresult *res, const char *what)
{
    for (size_t i = 0; status == OD_PG_EQUERY && i < OD_ARRAY_SIZE(domain_errors); i++) {
        if (strcmp(od_pg_sqlstate(res), domain_errors[i].sqlstate) == 0) {
            ingress__reply_problem(ctx, domain_errors[i].status, domain_errors[i].code, domain_errors[i].detail,
                                   NULL);
            return;
        }
    }
    if (status == OD_PG_EQUERY && od_pg_error_kind(res) == OD_PG_ERR_INPUT) {
        /* a value the checks in C let through and PostgreSQL refused: the
         * client's to fix, never reported as our unavailability */
        const char *ss = od_pg_sqlstate(res);
        od_warn("%s: input refused by postgresql (SQLSTATE %s): %s", what, ss, od_pg_errmsg(res));
        if (ss[1] == '3')
            ingress__reply_problem(ctx, 409, "conflict", "the request conflicts with the project's current data", NULL);
        else
            ingress__reply_problem(ctx, 400, "invalid_parameter",
                                   "a value of the request is out of the range the API can store", NULL);
        return;
    }
    if (status == OD_PG_EQUERY)
        od_error("%s: %s (SQLSTATE %s)", what, od_pg_errmsg(res), od_pg_sqlstate(res));
    ingress__reply_unavailable(ctx);
}

void ingress__reply_overloaded(ctx_t *ctx)
{
    ingress__reply_problem(ctx, 503, "overloaded", "this ingress has too much work waiting; retry shortly", NULL);
}

/* ---- od_api: every endpoint but POST /v1/calls ---- */

static void on_api_result(void *arg, int status, PGresult *res)
{
    ctx_t *ctx = arg;
    if (status != OD_PG_OK) {
        ingress__reply_failed(ctx, status, res, ctx->route->pattern);
        ingress__ctx_free(ctx);
        return;
    }
    json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    int http = (int)json_integer_value(json_object_get(r, "status"));
    ctx->rl = json_incref(json_object_get(r, "rl"));
    const char *body = json_string_value(json_object_get(r, "body"));
    const char *code = json_string_value(json_object_get(r, "code"));
    const char *detail = json_string_value(json_object_get(r, "detail"));
    if (http == 429)
        od_metric_add(m.rate_limited, 1);
    if (code != NULL) {
        const char *field = json_string_value(json_object_get(r, "field"));
        detail = detail ? detail
                 : http == 404 ? "no such object in this project"
                 : http == 429 ? "too many requests for this API key; see Retry-After"
                               : code;
        /* a problem about one field of the body names it, as the body checks do */
        json_t *errs = field ? json_pack("[{ss ss ss}]", "field", field, "code", code, "message", detail) : NULL;
        char *e = errs ? json_dumps(errs, JSON_COMPACT) : NULL;
        ingress__reply_problem(ctx, http, code, detail, e);
        free(e);
        json_decref(errs);
    } else if (http == 204) {
        ingress__reply(ctx, 204, "application/json", "", 0);
    } else if (body != NULL && strcmp(ctx->route->pattern, "/v1/api-keys") == 0 && http == 201) {
        /* the key itself is shown only in this answer: splice it into the stored record */
        const char *key = ctx->body;
        od_buf_t b = OD_BUF_INIT;
        od_buf_append(&b, body, strlen(body) - 1);
        od_buf_printf(&b, ", \"key\" : \"%s\"}", key);
        ingress__reply_json(ctx, 201, b.base);
        od_buf_free(&b);
    } else {
        ingress__reply_json(ctx, http, body ? body : "{}");
    }
    json_decref(r);
    ingress__ctx_free(ctx);
}

/* Runs od_api(op, args); takes ownership of args. */
void ingress__actor(const ctx_t *ctx, char *out, size_t size)
{
    snprintf(out, size, "{\"type\":\"api_key\",\"key_id\":\"%s\",\"ip\":\"%s\"}", ctx->key.key_id, ctx->ip);
}

static void api_run_on(ctx_t *ctx, od_pg_t *pg, const char *stmt, const char *op, json_t *args, od_pg_cb cb);

void ingress__api_run(ctx_t *ctx, const char *stmt, const char *op, json_t *args, od_pg_cb cb)
{
    api_run_on(ctx, ctx->in->pg, stmt, op, args, cb);
}

static void heavy_release(ingress_t *in, const char *project)
{
    for (int i = 0; i < in->nheavy; i++) {
        if (strcmp(in->heavy[i], project) == 0) {
            memmove(in->heavy[i], in->heavy[--in->nheavy], sizeof(in->heavy[i]));
            return;
        }
    }
}

static void on_heavy_result(void *arg, int status, PGresult *res)
{
    ctx_t *ctx = arg;
    heavy_release(ctx->in, ctx->key.project_id);
    on_api_result(ctx, status, res);
}

void ingress__api_run_heavy(ctx_t *ctx, const char *stmt, const char *op, json_t *args)
{
    ingress_t *in = ctx->in;
    int64_t mine = 0;
    for (int i = 0; i < in->nheavy; i++)
        mine += strcmp(in->heavy[i], ctx->key.project_id) == 0;
    if (mine >= in->conf->imports_per_project || in->nheavy == INGRESS_HEAVY_MAX) {
        json_decref(args);
        if (mine >= in->conf->imports_per_project)
            ingress__reply_problem(ctx, 429, "too_many_imports",
                                   "the project has as many imports and cancels running as it may; retry when one "
                                   "has finished", NULL);
        else
            ingress__reply_problem(ctx, 503, "overloaded", "this ingress runs as many imports as it may; retry",
                                   NULL);
        ingress__ctx_free(ctx);
        return;
    }
    memcpy(in->heavy[in->nheavy++], ctx->key.project_id, 37);
    api_run_on(ctx, in->pg_heavy, stmt, op, args, on_heavy_result);
}

/* Runs stmt(op, args) on pg; takes ownership of args. If it cannot be sent: 503 (and the heavy slot back). */
static void api_run_on(ctx_t *ctx, od_pg_t *pg, const char *stmt, const char *op, json_t *args, od_pg_cb cb)
{
    char *a = json_dumps(args, JSON_COMPACT);
    char rph[24];
    snprintf(rph, sizeof(rph), "%lld", (long long)ctx->key.requests_per_hour);
    char actor[160];
    ingress__actor(ctx, actor, sizeof(actor));
    const char *params[6] = {ctx->key.key_id, ctx->key.project_id, rph, op, a, actor};
    int rc = od_pg_query_bounded(pg, stmt, 6, params, cb ? cb : on_api_result, ctx);
    free(a);
    json_decref(args);
    if (rc != 0) {
        if (cb == on_heavy_result)
            heavy_release(ctx->in, ctx->key.project_id);
        if (rc == OD_PG_EFULL)
            ingress__reply_overloaded(ctx);
        else
            ingress__reply_unavailable(ctx);
        ingress__ctx_free(ctx);
    }
}

void ingress__api_call(ctx_t *ctx, const char *op, json_t *args)
{
    ingress__api_run(ctx, "api", op, args, NULL);
}

int ingress__path_id(ctx_t *ctx, const char *what, char id[37])
{
    return ingress__path_id_at(ctx, 0, what, id);
}

int ingress__path_id_at(ctx_t *ctx, int i, const char *what, char id[37])
{
    h2o_iovec_t v = ctx->params.v[i];
    if (od_uuid_check(v.base, v.len) != 0) {
        char detail[64];
        snprintf(detail, sizeof(detail), "no such %s in this project", what);
        ingress__reply_problem(ctx, 404, "not_found", detail, NULL);
        ingress__ctx_free(ctx);
        return -1;
    }
    for (size_t k = 0; k < 36; k++)
        id[k] = (char)(v.base[k] >= 'A' && v.base[k] <= 'F' ? v.base[k] + 32 : v.base[k]);
    id[36] = '\0';
    return 0;
}

/* An operation on one object named by the path's id; a malformed id is as unknown as a missing one. */
static void api_call_by_id(ctx_t *ctx, const char *op, const char *what)
{
    char id[37];
    if (ingress__path_id(ctx, what, id) == 0)
        ingress__api_call(ctx, op, json_pack("{ss}", "id", id));
}

static void route_get_call(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    api_call_by_id(ctx, "get_call", "call");
}

/* The URL or object key of the call's recording; od_recording_api logs the access (016_recordings.sql). */
static void route_get_recording(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    char id[37];
    if (ingress__path_id(ctx, "call", id) == 0)
        ingress__api_run(ctx, "recording_api", "get_recording", json_pack("{ss}", "id", id), NULL);
}

static void route_cancel_call(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    api_call_by_id(ctx, "cancel_call", "call");
}

void ingress__bad_param(ctx_t *ctx, const char *field, const char *message)
{
    h2o_req_t *req = ingress__req(ctx);
    ctx->answered = 1;
    if (req != NULL)
        od_http_problem_field(req, 400, "invalid_parameter", field, message);
    ingress__ctx_free(ctx);
}

void ingress__bad_query(ctx_t *ctx)
{
    ingress__bad_param(ctx, "query",
                       "a query parameter is malformed: bad percent-encoding, NUL, or not UTF-8");
}

int ingress__errs_reply(ctx_t *ctx, ingress_errs_t *e)
{
    char *list = json_dumps(e->list, JSON_COMPACT);
    ingress__reply_problem(ctx, strcmp(e->first, "invalid_json") == 0 ? 400 : 422, e->first, e->first_msg, list);
    free(list);
    json_decref(e->list);
    ingress__ctx_free(ctx);
    return -1;
}

int ingress__page_params(ctx_t *ctx, h2o_req_t *req, json_t *args)
{
    int bad = 0;
    char *v;
    if ((v = od_http_query(req, "limit", &bad)) != NULL) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < 1 || n > 200)
            return json_decref(args), ingress__bad_param(ctx, "limit", "limit must be an integer from 1 to 200"), -1;
        json_object_set_new(args, "limit", json_integer(n));
    }
    if ((v = od_http_query(req, "cursor", &bad)) != NULL) {
        if (od_uuid_check(v, strlen(v)) != 0)
            return json_decref(args), ingress__bad_param(ctx, "cursor", "must be an id (UUID)"), -1;
        json_object_set_new(args, "cursor", json_string(v));
    }
    if (bad)
        return json_decref(args), ingress__bad_query(ctx), -1;
    return 0;
}

static void route_list_calls(ctx_t *ctx, h2o_req_t *req)
{
    json_t *args = json_object();
    int bad = 0;
    char *v;
    if (ingress__page_params(ctx, req, args) != 0)
        return;
    if ((v = od_http_query(req, "status", &bad)) != NULL) {
        if (od_call_status_parse(v) < 0)
            return json_decref(args), ingress__bad_param(ctx, "status", "unknown status");
        json_object_set_new(args, "status", json_string(v));
    }
    if ((v = od_http_query(req, "final_state", &bad)) != NULL) {
        if (od_final_state_parse(v) <= 0)
            return json_decref(args), ingress__bad_param(ctx, "final_state", "unknown final state");
        json_object_set_new(args, "final_state", json_string(v));
    }
    if ((v = od_http_query(req, "batch_id", &bad)) != NULL) {
        if (od_uuid_check(v, strlen(v)) != 0)
            return json_decref(args), ingress__bad_param(ctx, "batch_id", "must be an id (UUID)");
        json_object_set_new(args, "batch_id", json_string(v));
    }
    if ((v = od_http_query(req, "phone", &bad)) != NULL) {
        char e164[OD_PHONE_E164_SIZE];
        const char *code;
        if (od_phone_parse_e164(v, strlen(v), e164, &code) != 0 && strcmp(code, "phone_not_possible") != 0)
            return json_decref(args), ingress__bad_param(ctx, "phone", "phone must be in E.164 format");
        /* a number that is not possible was never called: the filter matches nothing (an empty page) */
        json_object_set_new(args, "phone", json_string(e164[0] != '\0' ? e164 : v));
    }
    /* `until` before `since` is an empty range: an empty page, as in GET /v1/billing */
    static const char *const bounds[] = {"since", "until"};
    for (size_t i = 0; i < 2; i++) {
        if ((v = od_http_query(req, bounds[i], &bad)) == NULL)
            continue;
        int64_t at;
        char ts[32];
        if (od_rfc3339_parse(v, strlen(v), &at, NULL) != 0)
            return json_decref(args), ingress__bad_param(ctx, bounds[i], i == 0 ? "since must be an RFC 3339 time"
                                                                                : "until must be an RFC 3339 time");
        od_rfc3339_format(at, ts);
        json_object_set_new(args, bounds[i], json_string(ts));
    }
    if (bad)
        return json_decref(args), ingress__bad_query(ctx);
    ingress__api_call(ctx, "list_calls", args);
}

static void route_get_project(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    ingress__api_call(ctx, "get_project", json_object());
}

static void route_list_keys(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    ingress__api_call(ctx, "list_keys", json_object());
}

static void route_revoke_key(ctx_t *ctx, h2o_req_t *req)
{
    (void)req;
    api_call_by_id(ctx, "revoke_key", "API key");
}

static void route_create_key(ctx_t *ctx, h2o_req_t *req)
{
    if (ingress__json_body_type(ctx, req) != 0)
        return;
    json_t *problem, *args = ingress__key_body(req->entity.base, req->entity.len, &problem);
    if (args == NULL) {
        const char *code = json_string_value(json_object_get(problem, "code"));
        if (strcmp(code, "invalid_json") == 0) {
            ingress__reply_problem(ctx, 400, "invalid_json", "the body must be a JSON object {\"name\", \"scopes\"}",
                                   NULL);
        } else {
            h2o_req_t *r = ingress__req(ctx);
            if (r != NULL)
                od_http_problem_field(r, 422, code, json_string_value(json_object_get(problem, "field")),
                                      json_string_value(json_object_get(problem, "message")));
        }
        json_decref(problem);
        ingress__ctx_free(ctx);
        return;
    }
    od_api_key_issued_t issued;
    char id[37];
    od_api_key_issue(&issued);
    od_uuid7(id);
    ctx->body = od_strdup(issued.key);
    json_object_set_new(args, "id", json_string(id));
    json_object_set_new(args, "hash", json_string(issued.hash));
    json_object_set_new(args, "prefix", json_string(issued.prefix));
    ingress__api_call(ctx, "create_key", args);
}

/* ---- POST /v1/calls ---- */

static void answer_accepted(ctx_t *ctx)
{
    h2o_req_t *req = ingress__req(ctx);
    if (req != NULL) {
        char loc[64];
        snprintf(loc, sizeof(loc), "/v1/calls/%s", ctx->call_id);
        od_http_add_header(req, "location", loc);
    }
    od_metric_observe(m.accept_latency, (double)(od_mono_ms() - ctx->started_ms) / 1000.0);
    ingress__reply(ctx, 202, "application/json", ctx->body, strlen(ctx->body));
}

/* The calls of one od_accept_done statement; those not yet answered get their 202 when it has run. */
typedef struct done_batch {
    ctx_t *head;
} done_batch_t;

static void on_accept_done(void *arg, int status, PGresult *res)
{
    done_batch_t *b = arg;
    if (status != OD_PG_OK)
        od_warn("marking calls published failed (%s); their Idempotency-Keys replay after 30 s",
                res ? od_pg_errmsg(res) : "database unavailable");
    for (ctx_t *ctx = b->head, *next; ctx != NULL; ctx = next) {
        next = ctx->next;
        if (!ctx->answered)
            answer_accepted(ctx);
        ingress__ctx_free(ctx);
    }
    free(b);
}

/*
 * End of the loop turn: the calls Kafka confirmed in it are marked published
 * and their idempotency records done, and only then answered: a client that
 * retries after its 202 always gets the replay, never a 409.
 */
static void accept_done_flush(uv_check_t *h)
{
    ingress_t *in = h->data;
    uv_check_stop(h);
    if (in->done_head == NULL)
        return;
    done_batch_t *b = od_malloc(sizeof(*b));
    b->head = in->done_head;
    in->done_head = NULL;
    /* [[call id, project id, Idempotency-Key or null, answer, published], ...] */
    json_t *done = json_array();
    for (ctx_t *ctx = b->head; ctx != NULL; ctx = ctx->next)
        json_array_append_new(done, json_pack("[sss?sb]", ctx->call_id, ctx->key.project_id,
                                              ctx->idem[0] ? ctx->idem : NULL, ctx->body, ctx->published));
    char *text = json_dumps(done, JSON_COMPACT);
    json_decref(done);
    const char *params[1] = {text};
    int rc = text ? od_pg_query(in->pg, "accept_done", 1, params, on_accept_done, b) : -1;
    free(text);
    if (rc != 0)
        on_accept_done(b, OD_PG_EUNAVAIL, NULL);
}

/* The call's Idempotency-Key record gets its answer and completes (and the call is marked published) at the end of the loop turn. */
static void accept_done(ctx_t *ctx)
{
    ingress_t *in = ctx->in;
    if (in->done_head == NULL)
        uv_check_start(&in->done_check, accept_done_flush);
    ctx->next = in->done_head;
    in->done_head = ctx;
}

static void on_published(void *arg, rd_kafka_resp_err_t err)
{
    ctx_t *ctx = arg;
    ctx->reported = 1;
    if (!ctx->answered)
        h2o_linklist_unlink(&ctx->waiting);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        od_metric_add(m.publish_failed, 1);
        od_log(OD_LOG_WARN, ctx->call_id, "publish failed (%s); the scheduler's sweep will find the call",
               rd_kafka_err2str(err));
    } else {
        ctx->published = 1;
    }
    accept_done(ctx);
}

static void on_publish_timer(uv_timer_t *t)
{
    ingress_t *in = t->data;
    int64_t now = od_mono_ms();
    while (!h2o_linklist_is_empty(&in->awaiting_publish)) {
        ctx_t *ctx = H2O_STRUCT_FROM_MEMBER(ctx_t, waiting, in->awaiting_publish.next);
        if (now - ctx->started_ms < in->conf->publish_wait_ms)
            break;
        /* Kafka is slow or down: the call is durable, answer now; the report frees ctx later */
        h2o_linklist_unlink(&ctx->waiting);
        od_metric_add(m.publish_late, 1);
        answer_accepted(ctx);
        if (ctx->hold != NULL) {
            od_http_release(ctx->hold);
            ctx->hold = NULL;
        }
    }
}

static void publish(ctx_t *ctx, int64_t due_ms)
{
    ingress_t *in = ctx->in;
    char msg[256];
    int n = snprintf(msg, sizeof(msg),
                     "{\"v\":1,\"type\":\"call.requested\",\"call_id\":\"%s\",\"project_id\":\"%s\","
                     "\"batch_id\":null,\"due_ms\":%lld,\"phone\":\"%s\"}",
                     ctx->call_id, ctx->key.project_id, (long long)due_ms, ctx->creq.phone);
    int rc = od_kprod_send(in->kp, in->topic_requested, ctx->key.project_id, 36, msg, (size_t)n, on_published, ctx);
    if (rc != 0) {
        od_metric_add(m.publish_failed, 1);
        od_log(OD_LOG_WARN, ctx->call_id, "publish refused (%s); the scheduler's sweep will find the call",
               rd_kafka_err2str((rd_kafka_resp_err_t)rc));
        accept_done(ctx);
        return;
    }
    h2o_linklist_insert(&in->awaiting_publish, &ctx->waiting);
}

/*
 * The 202's call object, as od_call_json (proto/sql) writes it for GET: the
 * ingress has every field of a queued call but the two PostgreSQL decided
 * (caller_id, created_at), so the database does not build it per call.
 */
static char *call_body(ctx_t *ctx, const char *caller_id, int64_t created_ms)
{
    char created[OD_RFC3339_BUF_SIZE], sched[OD_RFC3339_BUF_SIZE];
    od_rfc3339_format(created_ms * 1000, created);
    if (ctx->creq.scheduled_us != 0)
        od_rfc3339_format(ctx->creq.scheduled_us, sched);
    json_t *o = json_pack("{ss ss sn sn sn ss ss sO ss? ss? sn si sn ss sn sn sn sn sn si sn sn sn}", "id",
                          ctx->call_id, "status", "queued", "final_state", "outcome", "goal_completed", "scenario",
                          ctx->creq.scenario, "phone", ctx->creq.phone, "metadata", ctx->meta, "scheduled_for",
                          ctx->creq.scheduled_us != 0 ? sched : NULL, "caller_id", caller_id, "batch_id", "attempt",
                          1, "retry_of", "created_at", created, "dialed_at", "connected_at", "ended_at", "duration_s",
                          "billed_s", "cost_micros", 0, "compliance", "calling_window", "recording");
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    return text ? text : od_strdup("{}");
}

/* The refusals od_accept_calls decides (its "r"), as answered. */
static const struct {
    const char *r, *code;
    int status;
    const char *field, *detail;
} refusals[] = {
    {"in_use", "idempotency_key_in_use", 409, NULL,
     "a request with this Idempotency-Key is still being processed; retry shortly"},
    {"reused", "idempotency_key_reused", 422, NULL, "this Idempotency-Key was used with a different request body"},
    {"rate_limited", "rate_limited", 429, NULL, "too many requests for this API key; see Retry-After"},
    {"unknown_scenario", "unknown_scenario", 422, "scenario", "the project has no scenario with this name"},
    {"caller_id_not_verified", "caller_id_not_verified", 422, "caller_id",
     "caller_id is not one of the project's verified numbers"},
    {"phone_on_dnc_list", "phone_on_dnc_list", 422, "phone", "this number is on the project's do-not-call list"},
    {"insufficient_funds", "insufficient_funds", 402, NULL, "the project's wallet is empty; top it up to place calls"},
};

static void accept_result(ctx_t *ctx, json_t *r)
{
    const char *what = json_string_value(json_object_get(r, "r"));
    ctx->rl = json_incref(json_object_get(r, "rl"));
    if (what == NULL) {
        ingress__reply_unavailable(ctx);
    } else if (strcmp(what, "accepted") == 0) {
        od_metric_add(m.accepted, 1);
        ctx->body = call_body(ctx, json_string_value(json_object_get(r, "caller_id")),
                              json_integer_value(json_object_get(r, "created_ms")));
        publish(ctx, json_integer_value(json_object_get(r, "due_ms")));
        return; /* ctx lives until its delivery report */
    } else if (strcmp(what, "replay") == 0) {
        od_metric_add(m.replays, 1);
        h2o_req_t *req = ingress__req(ctx);
        if (req != NULL)
            od_http_add_header(req, "idempotent-replayed", "true");
        const char *body = json_string_value(json_object_get(r, "body"));
        if (body == NULL)
            body = "{}";
        ingress__reply(ctx, (int)json_integer_value(json_object_get(r, "status")), "application/json", body, strlen(body));
    } else {
        size_t i;
        for (i = 0; i < OD_ARRAY_SIZE(refusals) && strcmp(refusals[i].r, what) != 0; i++)
            ;
        if (i == OD_ARRAY_SIZE(refusals)) {
            ingress__reply_unavailable(ctx);
        } else {
            const char *code = refusals[i].code;
            if (refusals[i].status == 429)
                od_metric_add(m.rate_limited, 1);
            if (refusals[i].field != NULL) {
                od_buf_t e = OD_BUF_INIT;
                od_buf_printf(&e, "[{\"field\":\"%s\",\"code\":\"%s\",\"message\":", refusals[i].field, code);
                od_buf_json_str(&e, refusals[i].detail, strlen(refusals[i].detail));
                od_buf_puts(&e, "}]");
                ingress__reply_problem(ctx, refusals[i].status, code, refusals[i].detail, e.base);
                od_buf_free(&e);
            } else {
                ingress__reply_problem(ctx, refusals[i].status, code, refusals[i].detail, NULL);
            }
        }
    }
    ingress__ctx_free(ctx);
}

static void on_group_check(uv_check_t *h);

static void on_accept_result(void *arg, int status, PGresult *res)
{
    accept_group_t *g = arg;
    json_t *results = NULL;
    if (status == OD_PG_OK)
        results = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    else if (status == OD_PG_EQUERY)
        od_error("accept: %s", od_pg_errmsg(res));
    size_t i = 0;
    for (ctx_t *ctx = g->head, *next; ctx != NULL; ctx = next, i++) {
        next = ctx->next;
        json_t *r = results ? json_array_get(results, i) : NULL;
        if (r == NULL) {
            ingress__reply_unavailable(ctx);
            ingress__ctx_free(ctx);
        } else {
            accept_result(ctx, r);
        }
    }
    json_decref(results);
    /* group commit: what arrived while this group was in PostgreSQL goes next, as one group */
    ingress_t *in = g->in;
    in->groups_inflight--;
    if (in->group_head != NULL)
        uv_check_start(&in->group_check, on_group_check);
    free(g);
}

/*
 * End of the loop turn: send the requests gathered as one statement. At most
 * one group per PostgreSQL connection is in flight: the requests of one API
 * key serialise on its rate-limit rows anyway, so more small transactions
 * would only wait for each other's commit; instead, what arrives meanwhile
 * joins the next group (group commit).
 */
static void on_group_check(uv_check_t *h)
{
    ingress_t *in = h->data;
    uv_check_stop(h);
    while (in->group_head != NULL && in->groups_inflight < in->conf->common.pg_conns) {
        accept_group_t *g = od_calloc(1, sizeof(*g));
        g->in = in;
        json_t *arr = json_array();
        ctx_t **tail = &g->head;
        while (in->group_head != NULL && g->n < in->conf->accept_batch) {
            ctx_t *ctx = in->group_head;
            in->group_head = ctx->next;
            in->group_waiting--;
            ctx->next = NULL;
            *tail = ctx;
            tail = &ctx->next;
            g->n++;
            char sched[32] = "";
            if (ctx->creq.scheduled_us != 0)
                od_rfc3339_format(ctx->creq.scheduled_us, sched);
            ctx->meta = json_loads(ctx->creq.metadata, 0, NULL);
            json_array_append_new(
                arr, json_pack("{ss ss sI sI ss? ss ss ss ss so ss? ss?}", "key_id", ctx->key.key_id, "project_id",
                               ctx->key.project_id, "calls_per_min", (json_int_t)ctx->key.calls_per_min,
                               "requests_per_hour", (json_int_t)ctx->key.requests_per_hour, "idem_key",
                               ctx->idem[0] ? ctx->idem : NULL, "request_hash", ctx->req_hash, "call_id",
                               ctx->call_id, "scenario", ctx->creq.scenario, "phone", ctx->creq.phone, "metadata",
                               json_incref(ctx->meta), "scheduled_for", sched[0] ? sched : NULL, "caller_id",
                               ctx->creq.caller_id[0] ? ctx->creq.caller_id : NULL));
        }
        in->groups_inflight++;
        od_metric_observe(m.group_size, g->n);
        char *text = json_dumps(arr, JSON_COMPACT);
        json_decref(arr);
        const char *params[1] = {text};
        int rc = od_pg_query(in->pg, "accept", 1, params, on_accept_result, g);
        free(text);
        if (rc != 0)
            on_accept_result(g, OD_PG_EUNAVAIL, NULL);
    }
    if (in->group_head == NULL)
        in->group_tail = &in->group_head;
}

int ingress__idem_header(ctx_t *ctx, h2o_req_t *req)
{
    h2o_iovec_t idem = od_http_header(req, "idempotency-key");
    if (idem.base == NULL)
        return 0;
    int ok = idem.len > 0 && idem.len <= 255;
    for (size_t i = 0; ok && i < idem.len; i++)
        ok = idem.base[i] >= 0x20 && idem.base[i] < 0x7f;
    if (!ok) {
        ingress__reply_problem(ctx, 400, "invalid_idempotency_key",
                               "Idempotency-Key must be 1 to 255 printable ASCII characters", NULL);
        ingress__ctx_free(ctx);
        return -1;
    }
    memcpy(ctx->idem, idem.base, idem.len);
    ctx->idem[idem.len] = '\0';
    return 0;
}

int ingress__json_body_type(ctx_t *ctx, h2o_req_t *req)
{
    h2o_iovec_t ct = od_http_header(req, "content-type");
    if (ct.base == NULL ||
        (ct.len >= 16 && strncasecmp(ct.base, "application/json", 16) == 0 &&
         (ct.len == 16 || ct.base[16] == ';' || ct.base[16] == ' ' || ct.base[16] == '\t')))
        return 0;
    ingress__reply_problem(ctx, 415, "unsupported_media_type", "send the body as application/json", NULL);
    ingress__ctx_free(ctx);
    return -1;
}

static void route_create_call(ctx_t *ctx, h2o_req_t *req)
{
    ingress_t *in = ctx->in;
    if (ingress__idem_header(ctx, req) != 0 || ingress__json_body_type(ctx, req) != 0)
        return;
    if (req->entity.len > (size_t)in->conf->max_body) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the body of a call request is limited to %lld bytes",
                 (long long)in->conf->max_body);
        ingress__reply_problem(ctx, 413, "body_too_large", detail, NULL);
        ingress__ctx_free(ctx);
        return;
    }
    od_buf_t errors = OD_BUF_INIT;
    const char *code;
    int st = od_call_request_parse(req->entity.base ? req->entity.base : "", req->entity.len, od_now_us(), &ctx->creq,
                                   &code, &errors);
    if (st != 0) {
        ingress__reply_problem(ctx, st, code,
                      st == 400 ? "the body is not valid JSON" : "the call request has invalid fields; see errors",
                      errors.base);
        od_buf_free(&errors);
        ingress__ctx_free(ctx);
        return;
    }
    od_buf_free(&errors);
    unsigned char md[32];
    unsigned int mdlen;
    EVP_Digest(req->entity.base, req->entity.len, md, &mdlen, EVP_sha256(), NULL);
    od_hex(md, sizeof(md), ctx->req_hash);
    od_uuid7(ctx->call_id);
    if (in->group_waiting >= in->conf->pg_max_queue * in->conf->common.pg_conns) {
        /* PostgreSQL is behind: the waiting requests (and their bodies) stay bounded */
        ingress__reply_overloaded(ctx);
        ingress__ctx_free(ctx);
        return;
    }
    *in->group_tail = ctx;
    in->group_tail = &ctx->next;
    in->group_waiting++;
    uv_check_start(&in->group_check, on_group_check);
}

/* ---- routing and authentication ---- */

static const route_t routes[] = {
    {"POST", "/v1/calls", OD_SCOPE_TRIGGER, route_create_call},
    {"GET", "/v1/calls", OD_SCOPE_READ, route_list_calls},
    {"GET", "/v1/calls/{}", OD_SCOPE_READ, route_get_call},
    {"POST", "/v1/calls/{}/cancel", OD_SCOPE_TRIGGER, route_cancel_call},
    {"GET", "/v1/calls/{}/recording", OD_SCOPE_READ, route_get_recording},
    {"GET", "/v1/project", OD_SCOPE_READ, route_get_project},
    {"GET", "/v1/scenarios", OD_SCOPE_READ, ingress__list_scenarios},
    {"POST", "/v1/scenarios", OD_SCOPE_ADMIN, ingress__create_scenario},
    {"GET", "/v1/scenarios/{}", OD_SCOPE_READ, ingress__get_scenario},
    {"PATCH", "/v1/scenarios/{}", OD_SCOPE_ADMIN, ingress__update_scenario},
    {"GET", "/v1/api-keys", OD_SCOPE_ADMIN, route_list_keys},
    {"POST", "/v1/api-keys", OD_SCOPE_ADMIN, route_create_key},
    {"DELETE", "/v1/api-keys/{}", OD_SCOPE_ADMIN, route_revoke_key},
    {"POST", "/v1/batches", OD_SCOPE_TRIGGER, ingress__create_batch},
    {"GET", "/v1/batches", OD_SCOPE_READ, ingress__list_batches},
    {"GET", "/v1/batches/{}", OD_SCOPE_READ, ingress__get_batch},
    {"PATCH", "/v1/batches/{}", OD_SCOPE_TRIGGER, ingress__update_batch},
    {"GET", "/v1/batches/{}/results.csv", OD_SCOPE_READ, ingress__batch_results},
    {"POST", "/v1/batches/{}/pause", OD_SCOPE_TRIGGER, ingress__pause_batch},
    {"POST", "/v1/batches/{}/resume", OD_SCOPE_TRIGGER, ingress__resume_batch},
    {"POST", "/v1/batches/{}/cancel", OD_SCOPE_TRIGGER, ingress__cancel_batch},
    {"GET", "/v1/dnc", OD_SCOPE_DNC, ingress__list_dnc},
    {"POST", "/v1/dnc", OD_SCOPE_DNC, ingress__add_dnc},
    {"DELETE", "/v1/dnc/{}", OD_SCOPE_DNC, ingress__delete_dnc},
    {"GET", "/v1/caller-ids", OD_SCOPE_ADMIN, ingress__list_caller_ids},
    {"POST", "/v1/caller-ids", OD_SCOPE_ADMIN, ingress__add_caller_id},
    {"GET", "/v1/billing", OD_SCOPE_READ, ingress__billing},
    {"GET", "/v1/audit-log", OD_SCOPE_ADMIN, ingress__audit_log},
    {"GET", "/v1/events", OD_SCOPE_READ, ingress__events},
    {"GET", "/v1/webhooks", OD_SCOPE_WEBHOOKS, ingress__list_webhooks},
    {"POST", "/v1/webhooks", OD_SCOPE_WEBHOOKS, ingress__create_webhook},
    {"GET", "/v1/webhooks/{}", OD_SCOPE_WEBHOOKS, ingress__get_webhook},
    {"PATCH", "/v1/webhooks/{}", OD_SCOPE_WEBHOOKS, ingress__update_webhook},
    {"DELETE", "/v1/webhooks/{}", OD_SCOPE_WEBHOOKS, ingress__delete_webhook},
    {"POST", "/v1/webhooks/{}/rotate-secret", OD_SCOPE_WEBHOOKS, ingress__rotate_webhook_secret},
    {"GET", "/v1/webhooks/{}/deliveries", OD_SCOPE_WEBHOOKS, ingress__webhook_deliveries},
    {"POST", "/v1/webhooks/{}/deliveries/{}/retry", OD_SCOPE_WEBHOOKS, ingress__retry_webhook_delivery},
};

/* The connection level a valid key earns: the CSV uploads need outbound:trigger or dnc:manage. */
static int key_level(const od_key_t *key)
{
    return key->scopes & (OD_SCOPE_TRIGGER | OD_SCOPE_DNC) ? OD_HTTP_UPLOADER : OD_HTTP_TENANT;
}

/* A first request head announced a large body: its key decides the connection's limits. */
static void on_admit_authed(void *arg, int status, const od_key_t *key)
{
    od_http_admit_done(arg, status == OD_AUTH_OK         ? key_level(key)
                            : status == OD_AUTH_UNKNOWN  ? OD_HTTP_ANON
                                                         : OD_HTTP_REFUSE);
}

static void on_admit(void *arg, od_http_admit_t *adm, const char *key, size_t len, const struct sockaddr *peer)
{
    ingress_t *in = arg;
    od_auth_lookup(in->auth, key, len, peer, on_admit_authed, adm);
}

static void on_authed(void *arg, int status, const od_key_t *key)
{
    ctx_t *ctx = arg;
    h2o_req_t *req = ingress__req(ctx);
    if (req == NULL) {
        ingress__ctx_free(ctx);
        return;
    }
    if (status == OD_AUTH_UNAVAILABLE) {
        ingress__reply_unavailable(ctx);
    } else if (status == OD_AUTH_OVERLOADED) {
        ingress__reply_overloaded(ctx);
    } else if (status != OD_AUTH_OK) {
        od_http_conn_level(req, OD_HTTP_ANON); /* the connection is closed after this answer */
        od_http_add_header(req, "www-authenticate", "Bearer realm=\"outdial\"");
        ingress__reply_problem(ctx, 401, "unauthorized", "missing, unknown or revoked API key", NULL);
    } else {
        od_http_conn_level(req, key_level(key)); /* keep-alive, and the next request's limits */
        if ((key->scopes & ctx->route->scope) == 0) {
            ingress__reply_problem(ctx, 403, "insufficient_scope", "this API key lacks the scope this endpoint needs",
                                   NULL);
        } else {
            ctx->key = *key;
            ctx->route->fn(ctx, req);
            return;
        }
    }
    ingress__ctx_free(ctx);
}

typedef struct route_binding {
    ingress_t *in;
    const route_t *route;
} route_binding_t;

/* The client's address as text ("" if neither IPv4 nor IPv6). */
static void peer_str(const struct sockaddr_storage *sa, char *out, size_t size)
{
    const void *addr = sa->ss_family == AF_INET    ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                       : sa->ss_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                                                   : NULL;
    if (addr == NULL || inet_ntop(sa->ss_family, addr, out, (socklen_t)size) == NULL)
        out[0] = '\0';
}

/* The routes that take CSV uploads up to OUTDIAL_BATCH_MAX_BYTES. */
static int is_upload_route(const route_t *r)
{
    return r->fn == ingress__create_batch || r->fn == ingress__add_dnc;
}

static void on_route(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    route_binding_t *b = arg;
    ctx_t *ctx = od_calloc(1, sizeof(*ctx));
    ctx->in = b->in;
    ctx->route = b->route;
    ctx->params = *params;
    ctx->started_ms = od_mono_ms();
    ctx->hold = od_http_hold(req);
    struct sockaddr_storage sa;
    sa.ss_family = AF_UNSPEC;
    if (req->conn->callbacks->get_peername != NULL &&
        req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&sa) > 0)
        peer_str(&sa, ctx->ip, sizeof(ctx->ip));
    if (b->in->svc->draining) {
        ingress__reply_problem(ctx, 503, "shutting_down", "this ingress is shutting down; retry", NULL);
        ingress__ctx_free(ctx);
        return;
    }
    /* a connection that may upload takes large bodies on every route: only the uploads keep them */
    if (req->entity.len > (size_t)b->in->conf->max_body && !is_upload_route(b->route)) {
        char detail[96];
        snprintf(detail, sizeof(detail), "the body of this request is limited to %lld bytes",
                 (long long)b->in->conf->max_body);
        ingress__reply_problem(ctx, 413, "body_too_large", detail, NULL);
        ingress__ctx_free(ctx);
        return;
    }
    h2o_iovec_t auth = od_http_header(req, "authorization");
    if (auth.base == NULL || auth.len < 8 || strncasecmp(auth.base, "Bearer ", 7) != 0) {
        on_authed(ctx, 401, NULL);
        return;
    }
    od_auth_lookup(b->in->auth, auth.base + 7, auth.len - 7, (struct sockaddr *)&sa, on_authed, ctx);
}

static void on_openapi(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    ingress_t *in = arg;
    (void)params;
    if (in->openapi == NULL)
        od_http_problem(req, 404, "not_found", "the OpenAPI document is not installed", NULL);
    else
        od_http_send(req, 200, "application/yaml", in->openapi, in->openapi_len);
}

static int on_ready(void *arg, od_buf_t *why)
{
    ingress_t *in = arg;
    if (od_pg_ready(in->pg) == 0) {
        od_buf_puts(why, "PostgreSQL unavailable");
        return 0;
    }
    if (!od_kprod_up(in->kp))
        od_buf_puts(why, "Kafka unavailable: calls are stored and published later");
    return 1;
}

static void on_drain_poll(uv_timer_t *t)
{
    ingress_t *in = t->data;
    if (od_http_holds() > 0 || in->group_head != NULL || ingress__batches_busy(in) || od_kprod_inflight(in->kp) > 0)
        return;
    uv_timer_stop(t);
    accept_done_flush(&in->done_check);
    od_kprod_destroy(in->kp, 5000);
    od_svc_done(in->svc, 0);
}

static void on_drain(od_svc_t *svc, void *arg)
{
    ingress_t *in = arg;
    od_http_stop(svc->http);
    ingress__batches_drain(in);
    ingress__events_drain(in);
    static uv_timer_t poll;
    uv_timer_init(svc->loop, &poll);
    poll.data = in;
    uv_timer_start(&poll, on_drain_poll, 50, 50);
}

#define ACTOR_CTE "WITH actor AS MATERIALIZED (SELECT set_config('outdial.actor', $6, true)) "

static const od_pg_stmt_t stmts[] = {
    {"auth", OD_AUTH_SQL},
    {"accept", "SELECT od_accept_calls($1::jsonb)::text"},
    {"accept_done", "SELECT od_accept_done($1::jsonb)"},
    /* $6: the actor, set first in the statement's own transaction for the audit triggers (006_control.sql) */
    {"api", ACTOR_CTE "SELECT od_api($1::uuid, $2::uuid, $3::integer, $4, $5::jsonb)::text FROM actor"},
    {"batch_api", ACTOR_CTE "SELECT od_batch_api($1::uuid, $2::uuid, $3::integer, $4, $5::jsonb)::text FROM actor"},
    {"control_api", ACTOR_CTE "SELECT od_control_api($1::uuid, $2::uuid, $3::integer, $4, $5::jsonb)::text FROM actor"},
    {"batch_settings_api",
     ACTOR_CTE "SELECT od_batch_settings_api($1::uuid, $2::uuid, $3::integer, $4, $5::jsonb)::text FROM actor"},
    {"scenario_api", ACTOR_CTE "SELECT od_scenario_api($1::uuid, $2::uuid, $3::integer, $4, $5::jsonb)::text FROM actor"},
    {"recording_api", ACTOR_CTE "SELECT od_recording_api($1::uuid, $2::uuid, $3::integer, $4, $5::jsonb)::text FROM actor"},
    {"webhook_api", ACTOR_CTE "SELECT od_webhook_api($1::uuid, $2::uuid, $3::integer, $4, $5::jsonb)::text FROM actor"},
    {"events_api", ACTOR_CTE "SELECT od_events_api($1::uuid, $2::uuid, $3::integer, $4, $5::jsonb)::text FROM actor"},
    {"events_since", "SELECT od_events_since($1::xid8, $2::bigint, $3::uuid[], $4::integer)::text"},
    {"events_cursor_fresh", "SELECT e.at > now() - make_interval(secs => $3::integer) FROM call_events e "
                            "JOIN calls c ON c.id = e.call_id WHERE e.xid = $1::xid8 AND e.id = $2::bigint "
                            "AND c.project_id = $4::uuid"},
    {"events_keys_live", "SELECT coalesce(array_agg(id), '{}')::text FROM api_keys WHERE id = ANY($1::uuid[]) "
                         "AND revoked_at IS NULL"},
    {"batch_create", "WITH actor AS MATERIALIZED (SELECT set_config('outdial.actor', $3, true)) "
                     "SELECT od_batch_create($1::jsonb, $2)::text FROM actor"},
    /* a page of results.csv: the row as uploaded (CSV-encoded at upload), its call's state and recording */
    {"batch_results", "SELECT r.row_no, r.line, c.id, c.status, c.final_state, c.outcome, c.goal_completed, "
                      "c.duration_ms, c.cost_micros, floor(extract(epoch FROM c.ended_at) * 1000000)::bigint, r.error, "
                      "c.attempt, rec.duration_ms, rec.sha256, "
                      "floor(extract(epoch FROM rec.deleted_at) * 1000000)::bigint "
                      "FROM batch_rows r LEFT JOIN calls c ON c.id = r.call_id "
                      "LEFT JOIN recordings rec ON rec.call_id = r.call_id "
                      "WHERE r.batch_id = $1::uuid AND r.row_no > $2::integer ORDER BY r.row_no LIMIT $3::integer"},
};

ingress_t *ingress_new(od_svc_t *svc, const ingress_conf_t *conf)
{
    char err[512];
    ingress_t *in = od_calloc(1, sizeof(*in));
    in->svc = svc;
    in->conf = conf;
    if (ingress__webhooks_init(in) != 0)
        return NULL;
    char options[64];
    snprintf(options, sizeof(options), "-c statement_timeout=%lld", (long long)conf->statement_timeout_ms);
    in->pg = od_pg_new_opts(svc->loop, "ingress", conf->common.pg_dsn, options, (int)conf->common.pg_conns, stmts,
                            OD_ARRAY_SIZE(stmts));
    in->pg_heavy = od_pg_new(svc->loop, "ingress-heavy", conf->common.pg_dsn, 2, stmts, OD_ARRAY_SIZE(stmts));
    in->kp = od_kprod_new(svc->loop, conf->common.kafka_brokers, "outdial-ingress", NULL, err, sizeof(err));
    if (in->kp == NULL) {
        od_error("kafka: %s", err);
        return NULL;
    }
    od_pg_set_max_queue(in->pg, (int)conf->pg_max_queue);
    od_auth_limits_t alim = {conf->auth_cache_ms, conf->auth_negative_ttl_ms, conf->auth_fail_max,
                             conf->auth_fail_window_ms, conf->auth_max_pending};
    in->auth = od_auth_new(in->pg, &alim);
    snprintf(in->topic_requested, sizeof(in->topic_requested), "%scalls.requested", conf->common.topic_prefix);
    in->group_tail = &in->group_head;
    uv_check_init(svc->loop, &in->group_check);
    in->group_check.data = in;
    h2o_linklist_init_anchor(&in->awaiting_publish);
    uv_timer_init(svc->loop, &in->publish_timer);
    in->publish_timer.data = in;
    uv_timer_start(&in->publish_timer, on_publish_timer, 100, 100);
    uv_check_init(svc->loop, &in->done_check);
    in->done_check.data = in;

    m.accepted = od_counter("outdial_ingress_calls_accepted_total", NULL, "calls accepted (202)");
    /* the family is there from the start: the rules' codes at 0 (others appear when first answered) */
    for (size_t i = 0; i < OD_ARRAY_SIZE(refusals); i++) {
        char labels[80];
        snprintf(labels, sizeof(labels), "code=\"%s\"", refusals[i].code);
        od_counter("outdial_ingress_calls_rejected_total", labels, REJECTED_HELP);
    }
    m.replays = od_counter("outdial_ingress_idempotent_replays_total", NULL, "answers replayed for an Idempotency-Key");
    m.rate_limited = od_counter("outdial_ingress_rate_limited_total", NULL, "requests refused with 429");
    m.publish_failed = od_counter("outdial_ingress_publish_failures_total", NULL,
                                  "accepted calls whose Kafka publish failed (recovered by the scheduler's sweep)");
    m.publish_late = od_counter("outdial_ingress_publish_late_total", NULL,
                                "accepted calls answered before Kafka confirmed (after OUTDIAL_PUBLISH_WAIT_MS)");
    m.unavailable = od_counter("outdial_ingress_unavailable_total", NULL, "requests answered 503");
    m.accept_latency = od_histogram("outdial_ingress_accept_seconds", NULL, "POST /v1/calls: request to 202",
                                    od_latency_buckets, od_latency_nbuckets);
    static const double sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    m.group_size = od_histogram("outdial_ingress_accept_group_size", NULL, "calls stored per transaction", sizes,
                                (int)OD_ARRAY_SIZE(sizes));

    ingress__batches_init(in);
    ingress__events_init(in);
    od_http_limits_t hlim = {
        .max_body = (size_t)conf->max_body,
        .max_upload = (size_t)conf->batch_max_bytes,
        .max_connections = (int)conf->max_connections,
        .max_header_bytes = (int)conf->max_header_bytes,
        .max_headers = (int)conf->max_headers,
        .header_timeout_ms = (uint64_t)conf->header_timeout_ms,
        .request_timeout_ms = (uint64_t)conf->request_timeout_ms,
        .upload_timeout_ms = (uint64_t)conf->upload_timeout_ms,
    };
    od_http_set_limits(svc->http, &hlim);
    od_http_set_admit(svc->http, on_admit, in);
    for (size_t i = 0; i < OD_ARRAY_SIZE(routes); i++) {
        route_binding_t *b = od_malloc(sizeof(*b));
        b->in = in;
        b->route = &routes[i];
        od_http_route(svc->http, routes[i].method, routes[i].pattern, on_route, b);
    }
    FILE *fp = fopen(conf->openapi_path, "rb");
    if (fp != NULL) {
        fseek(fp, 0, SEEK_END);
        in->openapi_len = (size_t)ftell(fp);
        fseek(fp, 0, SEEK_SET);
        in->openapi = od_malloc(in->openapi_len + 1);
        in->openapi_len = fread(in->openapi, 1, in->openapi_len, fp);
        fclose(fp);
    } else {
        od_warn("OpenAPI document %s not found; /v1/openapi.yaml answers 404", conf->openapi_path);
    }
    od_http_route(svc->http, "GET", "/v1/openapi.yaml", on_openapi, in);
    ingress__console_init(in);
    od_svc_set_ready(svc, on_ready, in);
    od_svc_on_drain(svc, on_drain, in);
    return in;
}
