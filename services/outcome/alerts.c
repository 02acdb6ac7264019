/*
 * Operator alerts for internal errors (README "Internal errors"): every call
 * that ended internal_error (its component and reason recorded on the call
 * by od_call_ended or od_reap, proto/sql/015_internal_errors.sql) is claimed
 * here once by some outcome copy, which
 *   - writes one alert line at level error, with "alert":"internal_error"
 *     and the component, reason and correlation ids as members, for a log
 *     router to match on;
 *   - counts it in outdial_internal_errors_total{component};
 *   - when OUTDIAL_ALERT_WEBHOOK_URL is set, POSTs it there (signed like
 *     customer webhooks when OUTDIAL_ALERT_WEBHOOK_SECRET is set), again
 *     after each failure as the claim's lease runs out
 *     (OUTDIAL_ALERT_WEBHOOK_RETRY_S, doubling to an hour), and gives up
 *     after ALERT_MAX_ATTEMPTS with an error line.
 * The line and the count are written at the first claim only; a copy that
 * dies after claiming leaves the alert to be claimed again, so a webhook may
 * come twice (its webhook-id is the call id: deduplicate on it), never none.
 *
 *   timer ──► od_alerts_claim ──► line + metric (first claim) ──► POST each (or none) ──► od_alerts_done
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "od/core.h"
#include "od/curlm.h"
#include "od/log.h"
#include "od/webhook.h"
#include "outcome.h"

#define CLAIM_LIMIT 100
#define ALERT_MAX_ATTEMPTS 10

typedef struct alert_post {
    outcome_alerts_t *a;
    struct alert_post *next; /* in the list of posts running */
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    char call_id[37];
    int attempt;
    char errbuf[CURL_ERROR_SIZE];
} alert_post_t;

struct outcome_alerts {
    outcome_t *o;
    uv_timer_t timer;
    od_curlm_t *multi; /* NULL without a webhook */
    alert_post_t *running;
    int claiming, marking, posting;
    json_t *done; /* call ids to mark done */
    struct {
        od_metric_t *dialer, *provider, *engine;
        od_metric_t *sent, *failed;
    } m;
};

static void mark_done(outcome_alerts_t *a);

static void on_marked(void *arg, int status, PGresult *res)
{
    outcome_alerts_t *a = arg;
    a->marking = 0;
    if (status != OD_PG_OK) /* claimed again when the lease runs out: a second webhook, no lost one */
        od_warn("alerts: marking done: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
}

static void mark_done(outcome_alerts_t *a)
{
    if (json_array_size(a->done) == 0 || a->marking)
        return;
    od_buf_t ids = OD_BUF_INIT;
    size_t i;
    json_t *v;
    od_buf_puts(&ids, "{");
    json_array_foreach(a->done, i, v) od_buf_printf(&ids, "%s%s", i ? "," : "", json_string_value(v));
    od_buf_puts(&ids, "}");
    const char *params[1] = {ids.base};
    if (od_pg_query(a->o->pg, "alerts_done", 1, params, on_marked, a) == 0)
        a->marking = 1;
    json_array_clear(a->done);
    od_buf_free(&ids);
}

static od_metric_t *component_metric(outcome_alerts_t *a, const char *component)
{
    if (component != NULL && strcmp(component, "engine") == 0)
        return a->m.engine;
    if (component != NULL && strcmp(component, "provider") == 0)
        return a->m.provider;
    return a->m.dialer;
}

static void post_free(alert_post_t *p)
{
    for (alert_post_t **pp = &p->a->running; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    curl_slist_free_all(p->headers);
    curl_easy_cleanup(p->easy);
    free(p->body);
    free(p);
}

static void on_posted(void *arg, CURL *easy, CURLcode result)
{
    outcome_alerts_t *a = arg;
    alert_post_t *p;
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&p);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    od_curlm_remove(a->multi, easy);
    a->posting--;
    if (result == CURLE_OK && code >= 200 && code < 300) {
        od_metric_add(a->m.sent, 1);
        json_array_append_new(a->done, json_string(p->call_id));
    } else {
        od_metric_add(a->m.failed, 1);
        char why[CURL_ERROR_SIZE + 32];
        if (result != CURLE_OK)
            snprintf(why, sizeof(why), "%s", p->errbuf[0] ? p->errbuf : curl_easy_strerror(result));
        else
            snprintf(why, sizeof(why), "HTTP %ld", code);
        if (p->attempt >= ALERT_MAX_ATTEMPTS) {
            od_log(OD_LOG_ERROR, p->call_id, "alert webhook: attempt %d failed (%s); giving up on this alert",
                   p->attempt, why);
            json_array_append_new(a->done, json_string(p->call_id));
        } else {
            od_log(OD_LOG_WARN, p->call_id, "alert webhook: attempt %d failed (%s); sent again later", p->attempt,
                   why);
        }
    }
    post_free(p);
    if (a->posting == 0)
        mark_done(a);
}

static int post(outcome_alerts_t *a, const char *call_id, int attempt, const char *body)
{
    const outcome_conf_t *conf = a->o->conf;
    alert_post_t *p = od_calloc(1, sizeof(*p));
    p->a = a;
    p->attempt = attempt;
    p->body = od_strdup(body);
    snprintf(p->call_id, sizeof(p->call_id), "%s", call_id);
    char h[OD_WEBHOOK_SIG_SIZE + 64], id[64], sig[OD_WEBHOOK_SIG_SIZE];
    int64_t ts = (int64_t)time(NULL);
    snprintf(id, sizeof(id), "alert_%s", call_id);
    p->headers = curl_slist_append(p->headers, "Content-Type: application/json");
    snprintf(h, sizeof(h), "webhook-id: %s", id);
    p->headers = curl_slist_append(p->headers, h);
    snprintf(h, sizeof(h), "webhook-timestamp: %lld", (long long)ts);
    p->headers = curl_slist_append(p->headers, h);
    if (conf->alert_webhook_secret[0] != '\0' &&
        od_webhook_sign(conf->alert_webhook_secret, id, ts, p->body, strlen(p->body), sig) == 0) {
        snprintf(h, sizeof(h), "webhook-signature: %s", sig);
        p->headers = curl_slist_append(p->headers, h);
    }
    CURL *e = p->easy = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, conf->alert_webhook_url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)conf->webhook_timeout_ms);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "outdial-alerts/1");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, p->errbuf);
    curl_easy_setopt(e, CURLOPT_PRIVATE, p);
    p->next = a->running;
    a->running = p;
    if (od_curlm_add(a->multi, e) != 0) {
        post_free(p);
        return -1;
    }
    a->posting++;
    return 0;
}

static void on_claimed(void *arg, int status, PGresult *res)
{
    outcome_alerts_t *a = arg;
    a->claiming = 0;
    if (status != OD_PG_OK) {
        od_warn("alerts: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
        return;
    }
    json_t *list = json_loads(PQgetvalue(res, 0, 0), 0, NULL), *al;
    size_t i;
    json_array_foreach(list, i, al)
    {
        const char *call_id = json_string_value(json_object_get(al, "call_id"));
        const char *component = json_string_value(json_object_get(al, "component"));
        int attempt = (int)json_integer_value(json_object_get(al, "attempt"));
        if (call_id == NULL)
            continue;
        if (attempt == 1) {
            json_t *f = json_pack("{ss}", "alert", "internal_error");
            json_object_update(f, al);
            json_object_del(f, "attempt");
            json_object_del(f, "call_id"); /* the line's own call_id member */
            char *fields = json_dumps(f, JSON_COMPACT | JSON_PRESERVE_ORDER);
            od_log_fields(OD_LOG_ERROR, call_id, fields, "ALERT internal_error in %s: %s", component ? component : "?",
                          json_string_value(json_object_get(al, "reason")) ?: "no reason given");
            free(fields);
            json_decref(f);
            od_metric_add(component_metric(a, component), 1);
        }
        /* the webhook gets the alert without its delivery count */
        json_t *copy = json_pack("{ss}", "type", "internal_error");
        json_object_update(copy, al);
        json_object_del(copy, "attempt");
        char *body = json_dumps(copy, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(copy);
        if (a->multi == NULL || post(a, call_id, attempt, body) != 0)
            json_array_append_new(a->done, json_string(call_id));
        free(body);
    }
    json_decref(list);
    if (a->posting == 0)
        mark_done(a);
}

static void on_timer(uv_timer_t *t)
{
    outcome_alerts_t *a = t->data;
    if (a->claiming || a->posting > 0 || a->marking)
        return;
    char limit[16], lease[16];
    snprintf(limit, sizeof(limit), "%d", CLAIM_LIMIT);
    snprintf(lease, sizeof(lease), "%lld", (long long)a->o->conf->alert_webhook_retry_s);
    const char *params[2] = {limit, lease};
    if (od_pg_query(a->o->pg, "alerts_claim", 2, params, on_claimed, a) == 0)
        a->claiming = 1;
}

outcome_alerts_t *outcome__alerts_start(outcome_t *o)
{
    outcome_alerts_t *a = od_calloc(1, sizeof(*a));
    a->o = o;
    a->done = json_array();
    static const char help[] = "calls ended internal_error, by the component that failed (counted once, when alerted)";
    a->m.dialer = od_counter("outdial_internal_errors_total", "component=\"dialer\"", help);
    a->m.provider = od_counter("outdial_internal_errors_total", "component=\"provider\"", help);
    a->m.engine = od_counter("outdial_internal_errors_total", "component=\"engine\"", help);
    a->m.sent = od_counter("outdial_alert_webhooks_total", "result=\"sent\"", "operator alert webhooks, by result");
    a->m.failed = od_counter("outdial_alert_webhooks_total", "result=\"failed\"", "operator alert webhooks, by result");
    if (o->conf->alert_webhook_url[0] != '\0') {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        a->multi = od_curlm_new(o->loop, on_posted, a);
    }
    uv_timer_init(o->loop, &a->timer);
    a->timer.data = a;
    uv_timer_start(&a->timer, on_timer, (uint64_t)o->conf->reaper_interval_ms, (uint64_t)o->conf->reaper_interval_ms);
    return a;
}

void outcome__alerts_pause(outcome_alerts_t *a)
{
    uv_timer_stop(&a->timer);
}

int outcome__alerts_busy(const outcome_alerts_t *a)
{
    return a->claiming || a->posting > 0 || a->marking;
}

static void on_timer_closed(uv_handle_t *h)
{
    outcome_alerts_t *a = h->data;
    json_decref(a->done);
    free(a);
}

void outcome__alerts_close(outcome_alerts_t *a)
{
    while (a->running != NULL) { /* a drain that timed out: claimed again when their lease runs out */
        od_curlm_remove(a->multi, a->running->easy);
        post_free(a->running);
    }
    if (a->multi != NULL)
        od_curlm_close(a->multi);
    uv_close((uv_handle_t *)&a->timer, on_timer_closed);
}
