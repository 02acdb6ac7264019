/*
 * The conversation engine (proto/engine.md): when a call is answered, the
 * dialer opens a session on the engine; the engine reports the outcome to
 * this dialer's HTTP server, the dialer hangs up and the call ends with that
 * outcome. If the call ends first (the callee hung up, the talk limit), the
 * dialer tells the engine, whose answer may still carry the outcome.
 *
 *   answered ──► STARTING ──2xx──► RUNNING ──report──► hangup ──► ended: completed + outcome
 *                   │                  │                                 (voicemail_detected)
 *                   │ refused,         └──ended first──► ENDING ──answer / report / timeout──► ended
 *                   │ unreachable                                  (outcome if the engine gave one)
 *                   └──► FAILED: hangup ──► ended: internal_error
 *
 * Requests go out through libcurl on the loop (od/curlm.h), one at a time
 * per call. A report is accepted from whoever holds the session's token,
 * which only the engine was given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "dialer.h"
#include "od/core.h"
#include "od/curlm.h"
#include "od/log.h"
#include "od/rfc3339.h"

#define ANSWER_MAX 4096 /* bytes of an engine's answer read */

struct dialer_engine {
    dialer_t *d;
    od_curlm_t *multi;
    char *sessions_url;        /* <OUTDIAL_ENGINE_URL>/v1/sessions */
    char callback_base[256];   /* where the engine reaches this dialer */
    struct curl_slist *headers;
    struct {
        od_metric_t *started, *refused, *reports, *rejected, *late;
    } m;
};

typedef enum engine_req_kind { ENGINE_REQ_START, ENGINE_REQ_END } engine_req_kind_t;

struct dialer_engine_req {
    dcall_t *call;
    engine_req_kind_t kind;
    CURL *easy;
    char *body;
    od_buf_t answer;
    char err[CURL_ERROR_SIZE];
};

/* ---- requests to the engine ---- */

static size_t on_answer(char *p, size_t size, size_t n, void *arg)
{
    dialer_engine_req_t *r = arg;
    size_t len = size * n;
    if (r->answer.len + len <= ANSWER_MAX)
        od_buf_append(&r->answer, p, len);
    return len;
}

static void req_free(dialer_engine_req_t *r)
{
    od_curlm_remove(r->call->d->engine->multi, r->easy);
    curl_easy_cleanup(r->easy);
    free(r->body);
    od_buf_free(&r->answer);
    if (r->call->eng.req == r)
        r->call->eng.req = NULL;
    free(r);
}

/* POSTs `body` (taken) to `url` for `call`; 0, or -1 when it could not start. */
static int post(dcall_t *call, engine_req_kind_t kind, const char *url, char *body)
{
    dialer_engine_t *e = call->d->engine;
    dialer_engine_req_t *r = od_calloc(1, sizeof(*r));
    r->call = call;
    r->kind = kind;
    r->body = body;
    r->easy = curl_easy_init();
    if (r->easy == NULL) {
        free(body);
        free(r);
        return -1;
    }
    curl_easy_setopt(r->easy, CURLOPT_URL, url);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)call->d->conf->engine_timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_answer);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    if (od_curlm_add(e->multi, r->easy) != 0) {
        curl_easy_cleanup(r->easy);
        free(body);
        free(r);
        return -1;
    }
    call->eng.req = r;
    return 0;
}

/* The reason a request did not get a 2xx, in words; 1 if it did. */
static int answered_ok(dialer_engine_req_t *r, CURLcode rc, char *why, size_t len)
{
    long code = 0;
    if (rc != CURLE_OK) {
        /* libcurl's error buffer says more than its code, when it says anything */
        snprintf(why, len, "conversation engine unreachable: %.160s", r->err[0] ? r->err : curl_easy_strerror(rc));
        return 0;
    }
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299) {
        snprintf(why, len, "conversation engine refused the session: HTTP %ld", code);
        return 0;
    }
    return 1;
}

/* ---- reports ---- */

/*
 * Reads a report (proto/messages/engine_report.schema.json) into the call,
 * its recording too (which replaces the provider's). Returns NULL, or the
 * field at fault with `msg` filled (and the call unchanged).
 */
static const char *read_report(dcall_t *call, json_t *rep, const char **msg)
{
    dialer_engine_report_t r;
    const char *field = dialer__engine_report_parse(rep, &r, msg);
    if (field != NULL)
        return field;
    call->eng.report = r.report;
    if (r.report == ENGINE_REPORT_COMPLETED) {
        call->eng.outcome = r.outcome;
        call->eng.goal = r.goal;
        call->eng.opted_out = r.opted_out;
    }
    if (r.has_recording)
        dialer__keep_recording(call, &r.rec);
    return NULL;
}

/* The call's end with the engine's word applied to the provider's result. */
static void finish(dcall_t *call, const provider_result_t *res)
{
    provider_result_t out = *res;
    char detail[sizeof(call->eng.detail) + 64];
    call->eng.phase = ENGINE_OVER;
    if (call->eng.failed[0] != '\0') {
        out = (provider_result_t){.final_state = OD_FINAL_INTERNAL_ERROR, .goal_completed = -1,
                                  .detail = call->eng.failed, .component = "engine"};
    } else if (call->eng.report == ENGINE_REPORT_VOICEMAIL) {
        snprintf(detail, sizeof(detail), "voicemail detected by the conversation engine; %s", res->detail);
        out = (provider_result_t){.final_state = OD_FINAL_VOICEMAIL_DETECTED, .goal_completed = -1, .detail = detail};
    } else if (call->eng.report == ENGINE_REPORT_COMPLETED && res->final_state == OD_FINAL_COMPLETED) {
        out.outcome = call->eng.outcome;
        out.goal_completed = call->eng.goal;
        out.opted_out = call->eng.opted_out;
    }
    dialer__end_call(call, &out);
}

static void finish_stashed(dcall_t *call)
{
    provider_result_t res = {.final_state = call->eng.final_state, .goal_completed = -1, .talk_ms = call->eng.talk_ms,
                             .hangup_by = call->eng.hangup_by, .detail = call->eng.detail};
    finish(call, &res);
}

static void on_done(void *arg, CURL *easy, CURLcode rc)
{
    (void)arg;
    dialer_engine_req_t *r = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
    dcall_t *call = r->call;
    dialer_engine_t *e = call->d->engine;
    char why[sizeof(call->eng.failed)];
    int ok = answered_ok(r, rc, why, sizeof(why));
    if (r->kind == ENGINE_REQ_START) {
        if (ok) {
            od_metric_add(e->m.started, 1);
            call->eng.phase = ENGINE_RUNNING;
            od_log(OD_LOG_DEBUG, call->id, "conversation engine session started");
        } else {
            od_metric_add(e->m.refused, 1);
            od_log(OD_LOG_ERROR, call->id, "%s: hanging up", why);
            snprintf(call->eng.failed, sizeof(call->eng.failed), "%s", why);
            call->eng.phase = ENGINE_OVER;
            if (call->handle != NULL)
                call->d->provider->ops->hangup(call->handle);
        }
        req_free(r);
        return;
    }
    /* the end notice: its 2xx may carry the engine's last word */
    if (ok && r->answer.len > 0 && call->eng.report == ENGINE_REPORT_NONE) {
        json_t *rep = json_loadb(r->answer.base, r->answer.len, 0, NULL);
        const char *msg = NULL;
        if (rep != NULL && read_report(call, rep, &msg) != NULL)
            od_log(OD_LOG_WARN, call->id, "the conversation engine's answer to the end is not a report: ignored");
        json_decref(rep);
    } else if (!ok) {
        od_log(OD_LOG_WARN, call->id, "end of the session not confirmed (%s): ended without its outcome", why);
    }
    req_free(r);
    finish_stashed(call);
}

/* A member of the claim that has a value (not absent, not null), for "sO*". */
static json_t *present(json_t *claim, const char *key)
{
    json_t *v = json_object_get(claim, key);
    return json_is_null(v) ? NULL : v;
}

/* ---- the session ---- */

void dialer__engine_start(dcall_t *call)
{
    dialer_t *d = call->d;
    dialer_engine_t *e = d->engine;
    od_random_hex(call->eng.token, (sizeof(call->eng.token) - 1) / 2);

    const provider_media_t *md = d->provider->ops->media != NULL && call->handle != NULL
                                     ? d->provider->ops->media(call->handle)
                                     : NULL;
    json_t *media = md == NULL ? json_null()
                               : json_pack("{s{ss si} s{ss si ss}}", "local", "host", md->local_host, "port",
                                           md->local_port, "remote", "host", md->remote_host, "port", md->remote_port,
                                           "codec", md->codec);
    char at[OD_RFC3339_BUF_SIZE], report_url[512];
    od_rfc3339_format(od_now_us(), at);
    snprintf(report_url, sizeof(report_url), "%s/engine/v1/sessions/%s/report", e->callback_base, call->id);
    json_t *claim = call->claim;
    json_t *disclosure = present(claim, "disclosure");
    json_t *s = json_pack("{ss ss sO* sO* sO* sO* sb sO* sO* so* ss ss ss}", "call_id", call->id, "project_id",
                          call->project_id, "scenario", present(claim, "scenario"), "phone", present(claim, "phone"),
                          "caller_id", present(claim, "caller_id"), "disclosure", disclosure, "disclosure_enabled",
                          disclosure != NULL, "opt_out_script", present(claim, "opt_out_script"), "metadata",
                          present(claim, "metadata"), "media", media, "answered_at", at, "report_url", report_url,
                          "report_token", call->eng.token);
    char *body = s != NULL ? json_dumps(s, JSON_COMPACT) : NULL;
    json_decref(s);
    call->eng.phase = ENGINE_STARTING;
    if (body == NULL || post(call, ENGINE_REQ_START, e->sessions_url, body) != 0) {
        snprintf(call->eng.failed, sizeof(call->eng.failed), "conversation engine: the session could not be sent");
        call->eng.phase = ENGINE_OVER;
        od_log(OD_LOG_ERROR, call->id, "%s: hanging up", call->eng.failed);
        if (call->handle != NULL)
            d->provider->ops->hangup(call->handle);
    }
}

int dialer__engine_ended(dcall_t *call, const provider_result_t *res)
{
    dialer_engine_t *e = call->d->engine;
    switch (call->eng.phase) {
    case ENGINE_NONE:
        return 0;
    case ENGINE_OVER:
        finish(call, res);
        return 1;
    case ENGINE_STARTING:
        req_free(call->eng.req); /* it may have arrived: the end notice follows */
        break;
    case ENGINE_RUNNING:
        break;
    case ENGINE_ENDING:
        return 1; /* (a provider ends a call once) */
    }
    if (call->eng.report != ENGINE_REPORT_NONE) { /* the engine's report made us hang up */
        provider_result_t ours = *res;
        if (ours.final_state == OD_FINAL_COMPLETED)
            ours.hangup_by = OD_HANGUP_US;
        finish(call, &ours);
        return 1;
    }
    /* ended before the engine reported: tell it, and wait for its last word (whose recording, if any, wins) */
    if (res->recording != NULL)
        dialer__keep_recording(call, res->recording);
    call->eng.phase = ENGINE_ENDING;
    call->eng.final_state = res->final_state;
    call->eng.talk_ms = res->talk_ms;
    call->eng.hangup_by = res->hangup_by;
    snprintf(call->eng.detail, sizeof(call->eng.detail), "%s", res->detail);
    char url[512];
    snprintf(url, sizeof(url), "%s/%s/end", e->sessions_url, call->id);
    json_t *n = json_pack("{ss ss sI ss}", "call_id", call->id, "final_state", od_final_state_name(res->final_state),
                          "talk_ms", (json_int_t)res->talk_ms, "detail", res->detail);
    if (n == NULL) /* a detail that is not UTF-8 */
        n = json_pack("{ss ss sI}", "call_id", call->id, "final_state", od_final_state_name(res->final_state),
                      "talk_ms", (json_int_t)res->talk_ms);
    char *body = json_dumps(n, JSON_COMPACT);
    json_decref(n);
    if (body == NULL || post(call, ENGINE_REQ_END, url, body) != 0)
        finish_stashed(call);
    return 1;
}

/* ---- POST /engine/v1/sessions/{call_id}/report ---- */

static dcall_t *find_session(dialer_t *d, const char *id, size_t len)
{
    for (dcall_t *c = d->calls; c != NULL; c = c->next) {
        /* a session that failed is gone; one that was reported stays known (409) until its slot is freed */
        if (strlen(c->id) == len && memcmp(c->id, id, len) == 0 && c->eng.phase != ENGINE_NONE &&
            (c->eng.phase != ENGINE_OVER || c->eng.report != ENGINE_REPORT_NONE))
            return c;
    }
    return NULL;
}

static void on_report(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    dialer_engine_t *e = arg;
    dialer_t *d = e->d;
    dcall_t *call = find_session(d, params->v[0].base, params->v[0].len);
    if (call == NULL) {
        od_metric_add(e->m.late, 1);
        od_http_problem(req, 404, "session_not_found",
                        "no session of that call is running on this dialer (it ended, or it never was)", NULL);
        return;
    }
    h2o_iovec_t auth = od_http_header(req, "authorization");
    size_t tl = strlen(call->eng.token);
    if (auth.len != 7 + tl || strncasecmp(auth.base, "Bearer ", 7) != 0 ||
        CRYPTO_memcmp(auth.base + 7, call->eng.token, tl) != 0) {
        od_metric_add(e->m.rejected, 1);
        od_http_add_header(req, "www-authenticate", "Bearer");
        od_http_problem(req, 401, "unauthorized", "the report must carry the session's report_token as a Bearer token",
                        NULL);
        return;
    }
    if (call->eng.report != ENGINE_REPORT_NONE) {
        od_http_problem(req, 409, "already_reported", "this session's outcome was already reported", NULL);
        return;
    }
    json_error_t jerr;
    json_t *rep = json_loadb(req->entity.base != NULL ? req->entity.base : "", req->entity.len, JSON_REJECT_DUPLICATES,
                             &jerr);
    const char *msg = "is not valid JSON", *field = rep == NULL ? "" : read_report(call, rep, &msg);
    json_decref(rep);
    if (field != NULL) {
        od_metric_add(e->m.rejected, 1);
        od_http_problem_field(req, 400, "invalid_report", field, msg);
        return;
    }
    od_metric_add(e->m.reports, 1);
    od_log(OD_LOG_INFO, call->id, "conversation engine reported %s%s%s: hanging up",
           call->eng.report == ENGINE_REPORT_VOICEMAIL ? "voicemail" : "completed",
           call->eng.report == ENGINE_REPORT_COMPLETED ? " " : "",
           call->eng.report == ENGINE_REPORT_COMPLETED ? od_outcome_name(call->eng.outcome) : "");
    char body[128];
    int n = snprintf(body, sizeof(body), "{\"call_id\":\"%s\",\"status\":\"accepted\"}", call->id);
    od_http_send_json(req, 202, body, (size_t)n);
    if (call->eng.phase == ENGINE_ENDING) { /* the call had ended: this is its last word */
        req_free(call->eng.req);
        finish_stashed(call);
    } else if (call->handle != NULL) {
        d->provider->ops->hangup(call->handle);
    }
}

/* ---- set-up ---- */

dialer_engine_t *dialer__engine_new(dialer_t *d, char *err, size_t errlen)
{
    const dialer_conf_t *conf = d->conf;
    size_t ul = strlen(conf->engine_url);
    if (strncmp(conf->engine_url, "http://", 7) != 0 && strncmp(conf->engine_url, "https://", 8) != 0) {
        snprintf(err, errlen, "OUTDIAL_ENGINE_URL \"%s\" is not an http:// or https:// URL", conf->engine_url);
        return NULL;
    }
    while (ul > 0 && conf->engine_url[ul - 1] == '/')
        ul--;
    dialer_engine_t *e = od_calloc(1, sizeof(*e));
    e->d = d;
    e->sessions_url = od_calloc(1, ul + sizeof("/v1/sessions"));
    memcpy(e->sessions_url, conf->engine_url, ul);
    strcat(e->sessions_url, "/v1/sessions");
    if (conf->engine_callback_url[0] != '\0') {
        snprintf(e->callback_base, sizeof(e->callback_base), "%s", conf->engine_callback_url);
    } else {
        const char *h = conf->common.http_host;
        snprintf(e->callback_base, sizeof(e->callback_base), "http://%s:%d",
                 h[0] == '\0' || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0 ? "127.0.0.1" : h,
                 od_http_port(d->svc->http));
    }
    size_t bl = strlen(e->callback_base);
    while (bl > 0 && e->callback_base[bl - 1] == '/')
        e->callback_base[--bl] = '\0';
    e->headers = curl_slist_append(NULL, "Content-Type: application/json");
    e->headers = curl_slist_append(e->headers, "Expect:"); /* no 100-continue round trip */
    if (conf->engine_token[0] != '\0') {
        char h[1024];
        snprintf(h, sizeof(h), "Authorization: Bearer %s", conf->engine_token);
        e->headers = curl_slist_append(e->headers, h);
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    e->multi = od_curlm_new(d->loop, on_done, e);
    e->m.started = od_counter("outdial_engine_sessions_total", "result=\"started\"",
                              "conversation engine sessions opened, by result");
    e->m.refused = od_counter("outdial_engine_sessions_total", "result=\"failed\"",
                              "conversation engine sessions opened, by result");
    e->m.reports = od_counter("outdial_engine_reports_total", "result=\"accepted\"",
                              "outcome reports received from the conversation engine, by result");
    e->m.rejected = od_counter("outdial_engine_reports_total", "result=\"rejected\"",
                               "outcome reports received from the conversation engine, by result");
    e->m.late = od_counter("outdial_engine_reports_total", "result=\"unknown_session\"",
                           "outcome reports received from the conversation engine, by result");
    od_http_route(d->svc->http, "POST", "/engine/v1/sessions/{}/report", on_report, e);
    od_info("conversation engine at %s; reports to %s/engine/v1/sessions/<call_id>/report", e->sessions_url,
            e->callback_base);
    return e;
}

void dialer__engine_close(dialer_engine_t *e)
{
    /* every call has ended, so no request is out */
    od_curlm_close(e->multi);
    curl_slist_free_all(e->headers);
    free(e->sessions_url);
    free(e);
    curl_global_cleanup();
}
