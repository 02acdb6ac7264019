/*
 * Private to outdial-ingress: the request context and the service's state,
 * shared by ingress.c (routing, calls, keys) and batches.c (CSV batches).
 */
#ifndef OD_INGRESS_INT_H
#define OD_INGRESS_INT_H

#include <jansson.h>

#include "call_request.h"
#include "request_body.h"
#include "ingress.h"
#include "od/metrics.h"

#define INGRESS_HEAVY_MAX 64 /* heavy statements in flight on one ingress (503 beyond) */

typedef struct ctx ctx_t;
typedef struct batch_job batch_job_t;
typedef struct sse_stream sse_stream_t;

/* A position in the call events (proto/sql/008_events.sql): (transaction id, event id). */
typedef struct od_event_cursor {
    uint64_t xid;
    int64_t id;
} od_event_cursor_t;
typedef void (*route_fn)(ctx_t *ctx, h2o_req_t *req);

typedef struct route {
    const char *method;
    const char *pattern;
    unsigned scope; /* OD_SCOPE_* needed */
    route_fn fn;
} route_t;

/* One API request from authentication to its answer. */
struct ctx {
    ingress_t *in;
    od_http_hold_t *hold;
    const route_t *route;
    od_http_params_t params; /* point into the request (alive while the hold is) */
    od_key_t key;
    json_t *rl;              /* rate-limit answer for the headers, or NULL */
    /* POST /v1/calls */
    od_call_request_t creq;
    char call_id[37];
    char idem[256];
    char req_hash[65];
    json_t *meta;            /* creq.metadata, parsed once */
    char *body;              /* accepted call JSON */
    int answered, reported, published;
    int64_t started_ms;
    char ip[48];             /* the client's address, for the audit log */
    h2o_linklist_t waiting;  /* in ingress.awaiting_publish */
    ctx_t *next;             /* in an accept group */
    batch_job_t *job;        /* the batch endpoints' state (batches.c), or NULL */
};

typedef struct accept_group {
    ingress_t *in;
    ctx_t *head;
    int n;
} accept_group_t;

struct ingress {
    od_svc_t *svc;
    const ingress_conf_t *conf;
    od_pg_t *pg;
    od_kprod_t *kp;
    od_auth_t *auth;
    char topic_requested[256];
    /* requests of this loop turn waiting for od_accept_calls */
    ctx_t *group_head, **group_tail;
    int groups_inflight;     /* od_accept_calls statements sent and not answered */
    int group_waiting;       /* requests on group_head..group_tail (OUTDIAL_PG_MAX_QUEUE x OUTDIAL_PG_CONNS at most) */
    uv_check_t group_check;
    /* accepted calls waiting for their delivery report, oldest first */
    h2o_linklist_t awaiting_publish;
    uv_timer_t publish_timer;
    ctx_t *done_head;        /* confirmed by Kafka, waiting for od_accept_done */
    uv_check_t done_check;
    char *openapi;
    size_t openapi_len;
    /* batch validation (batches.c) */
    od_pg_t *pg_import;      /* one connection for od_batch_import and od_batch_import_claim */
    /* heavy statements (a DNC import, a batch's cancel: up to a million rows) run on their own pool,
     * without the statement timeout, never on the request connections; at most
     * OUTDIAL_IMPORTS_PER_PROJECT of one project at once on this ingress */
    od_pg_t *pg_heavy;
    char heavy[INGRESS_HEAVY_MAX][37]; /* the project of each heavy statement in flight */
    int nheavy;
    char batch_owner[64];    /* this process, as batches.import_owner */
    uv_timer_t batch_claim_timer;
    int batch_claiming;      /* a claim is in flight, or its batch is being validated */
    int batch_imports;       /* validations under way */
    /* event streams (events.c) */
    sse_stream_t *sse_head;
    int64_t sse_count;
    uv_timer_t sse_timer;
    od_event_cursor_t sse_cursor; /* the shared poll has read everything before this */
    int sse_cursor_set, sse_polling;
    int sse_keycheck_inflight;   /* the revocation check of the streams' keys (events.c) */
    int64_t sse_keycheck_ms;     /* when it was last sent (monotonic ms) */
    struct od_webhook_keys *webhook_keys; /* seal the webhook secrets (webhooks.c; OUTDIAL_SECRET_KEY) */
};


/* ---- webhooks.c ---- */

/** Reads OUTDIAL_SECRET_KEY into in->webhook_keys: 0, or -1 after logging why. */
int ingress__webhooks_init(ingress_t *in);

/* ---- ingress.c ---- */

/** RateLimit-Policy, RateLimit (and Retry-After) from od_rate_take's answer. */
void ingress__ratelimit_headers(h2o_req_t *req, json_t *rl);
/** Frees a request context (releases its hold). */
void ingress__ctx_free(ctx_t *ctx);
/** The request, or NULL if the client went away. */
h2o_req_t *ingress__req(ctx_t *ctx);
/** Answers (with the rate-limit headers of ctx->rl). */
void ingress__reply(ctx_t *ctx, int status, const char *ctype, const char *body, size_t len);
void ingress__reply_json(ctx_t *ctx, int status, const char *json);
void ingress__reply_problem(ctx_t *ctx, int status, const char *code, const char *detail, const char *errors);
void ingress__reply_unavailable(ctx_t *ctx);
/**
 * Answers a query that failed (`status` OD_PG_EQUERY or OD_PG_EUNAVAIL, `res`
 * its error result or NULL): an error the input caused (SQLSTATE class 22:
 * 400 invalid_parameter; 23: 409 conflict), else 503. Logs it under `what`.
 * Does not free ctx.
 */
void ingress__reply_failed(ctx_t *ctx, int status, const PGresult *res, const char *what);
/** 503 overloaded (Retry-After): a bounded queue is full. */
void ingress__reply_overloaded(ctx_t *ctx);
/** 400 invalid_parameter for a query parameter; frees ctx. */
void ingress__bad_param(ctx_t *ctx, const char *field, const char *message);
/** 400 invalid_parameter for a query string od_http_query found malformed; frees ctx. */
void ingress__bad_query(ctx_t *ctx);
/**
 * Runs `stmt` — "api" (od_api), "batch_api" (od_batch_api) or "control_api"
 * (od_control_api), which take the same parameters: the key, its project and
 * hourly budget, `op`, `args`, and the actor for the audit log — and
 * answers with `cb`, or, when cb is NULL, with the statement's {status, body |
 * code, detail, rl}. Takes ownership of args; frees ctx if it cannot send.
 */
void ingress__api_run(ctx_t *ctx, const char *stmt, const char *op, json_t *args, od_pg_cb cb);
/** The actor of ctx's request for the audit log, as JSON: {"type": "api_key", "key_id", "ip"}. */
void ingress__actor(const ctx_t *ctx, char *out, size_t size);
/** ingress__api_run of "api", answered generically. */
void ingress__api_call(ctx_t *ctx, const char *op, json_t *args);
/**
 * As ingress__api_run with on_api_result's answer, on the heavy pool: for a
 * statement that may touch a million rows. 429 too_many_imports when the
 * project has OUTDIAL_IMPORTS_PER_PROJECT of them in flight here. Takes
 * ownership of args.
 */
void ingress__api_run_heavy(ctx_t *ctx, const char *stmt, const char *op, json_t *args);
/** The path's id (lower case) for an object named `what`: 0, or -1 after answering 404 (ctx freed). */
int ingress__path_id(ctx_t *ctx, const char *what, char id[37]);
/** The same for the i-th path parameter (0 = the first). */
int ingress__path_id_at(ctx_t *ctx, int i, const char *what, char id[37]);

/** Answers e (400 if its first code is invalid_json, else 422), frees it and ctx; returns -1. */
int ingress__errs_reply(ctx_t *ctx, ingress_errs_t *e);
/**
 * 0 if the request's Content-Type is absent or application/json (with or
 * without parameters); else -1 after answering 415 unsupported_media_type
 * (ctx freed). For the routes whose body is JSON.
 */
int ingress__json_body_type(ctx_t *ctx, h2o_req_t *req);
/** Takes the Idempotency-Key header into ctx->idem: 0, or -1 after answering 400 (ctx freed). */
int ingress__idem_header(ctx_t *ctx, h2o_req_t *req);
/** limit (1..200) and cursor (an id) of a list into args: 0, or -1 after answering 400 (args and ctx freed). */
int ingress__page_params(ctx_t *ctx, h2o_req_t *req, json_t *args);

/* ---- scenarios.c ---- */

void ingress__list_scenarios(ctx_t *ctx, h2o_req_t *req);
void ingress__get_scenario(ctx_t *ctx, h2o_req_t *req);
void ingress__create_scenario(ctx_t *ctx, h2o_req_t *req);
void ingress__update_scenario(ctx_t *ctx, h2o_req_t *req);

/* ---- batches.c ---- */

void ingress__batches_init(ingress_t *in);
/** Drain: no more batches taken over from other copies. */
void ingress__batches_drain(ingress_t *in);
/** 1 while a validation is under way (drain waits for it). */
int ingress__batches_busy(const ingress_t *in);
void ingress__create_batch(ctx_t *ctx, h2o_req_t *req);
void ingress__list_batches(ctx_t *ctx, h2o_req_t *req);
void ingress__get_batch(ctx_t *ctx, h2o_req_t *req);
void ingress__batch_results(ctx_t *ctx, h2o_req_t *req);
void ingress__pause_batch(ctx_t *ctx, h2o_req_t *req);
void ingress__resume_batch(ctx_t *ctx, h2o_req_t *req);
void ingress__cancel_batch(ctx_t *ctx, h2o_req_t *req);
void ingress__update_batch(ctx_t *ctx, h2o_req_t *req);
/* ---- events.c ---- */

void ingress__events_init(ingress_t *in);
void ingress__events(ctx_t *ctx, h2o_req_t *req);
/** Drain: ends every event stream (clients reconnect elsewhere with Last-Event-ID). */
void ingress__events_drain(ingress_t *in);

/* ---- control.c ---- */

void ingress__list_dnc(ctx_t *ctx, h2o_req_t *req);
void ingress__add_dnc(ctx_t *ctx, h2o_req_t *req);
void ingress__delete_dnc(ctx_t *ctx, h2o_req_t *req);
void ingress__list_caller_ids(ctx_t *ctx, h2o_req_t *req);
void ingress__add_caller_id(ctx_t *ctx, h2o_req_t *req);
void ingress__billing(ctx_t *ctx, h2o_req_t *req);
void ingress__audit_log(ctx_t *ctx, h2o_req_t *req);

/* ---- console.c ---- */

/** Loads the console's files and routes / and /console/{}. */
void ingress__console_init(ingress_t *in);

/* ---- webhooks.c ---- */

void ingress__list_webhooks(ctx_t *ctx, h2o_req_t *req);
void ingress__create_webhook(ctx_t *ctx, h2o_req_t *req);
void ingress__get_webhook(ctx_t *ctx, h2o_req_t *req);
void ingress__update_webhook(ctx_t *ctx, h2o_req_t *req);
void ingress__delete_webhook(ctx_t *ctx, h2o_req_t *req);
void ingress__rotate_webhook_secret(ctx_t *ctx, h2o_req_t *req);
void ingress__webhook_deliveries(ctx_t *ctx, h2o_req_t *req);
void ingress__retry_webhook_delivery(ctx_t *ctx, h2o_req_t *req);

/** Frees a batch job hanging off a context (ctx->job). */
void ingress__batch_job_free(batch_job_t *job);

#endif
