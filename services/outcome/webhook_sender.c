/*
 * The webhook sender (docs/webhooks.md): leases due deliveries from
 * PostgreSQL, POSTs them with libcurl's multi interface driven by this
 * service's libuv loop, and records every attempt, which schedules the
 * retries — the recording and the next lease in one statement
 * (od_webhook_cycle):
 *
 *   poll timer ──► cycle: record answers, lease (room = concurrency - in flight) ──► one easy handle each
 *                    ▲                                                                     │ done
 *                    └──────────────────────── answers ◄───────────────────────────────────┘
 *
 * libcurl runs on the loop through od/curlm.h.
 * Every connection's address passes od_webhook_addr_forbidden first (the
 * open-socket callback), so a name that resolves to a private address at
 * send time is refused even if it was public at creation.
 *
 * The slots are shared over every copy: per endpoint, per project
 * (OUTDIAL_WEBHOOK_PER_PROJECT), and the free ones go to the project with
 * the fewest in flight first (od_webhook_claim, 023_webhook_limits.sql).
 * The endpoints' secrets are stored sealed (od_webhook_secret_open with
 * OUTDIAL_SECRET_KEY); they are opened here just before signing and wiped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "od/core.h"
#include "od/curlm.h"
#include "od/log.h"
#include "od/webhook.h"
#include "outcome.h"

#define SNIPPET_MAX 200 /* bytes of a failed answer's body kept in last_error */
#define RETRY_MS 1000 /* after a failed cycle */

typedef struct wh_sender wh_sender_t;

typedef struct wh_transfer {
    wh_sender_t *s;
    struct wh_transfer *prev, *next; /* in the sender's list of transfers running */
    CURL *easy;
    struct curl_slist *headers;
    char id[37];
    char *payload;
    char errbuf[CURL_ERROR_SIZE];
    char snippet[SNIPPET_MAX + 1];
    size_t snippet_len;
    char refused[INET6_ADDRSTRLEN]; /* an address the open-socket callback refused */
    uint64_t started_ms;
    int64_t attempts; /* attempts recorded before this one (019_webhook_attempts.sql) */
} wh_transfer_t;

struct wh_sender {
    outcome_t *o;
    od_curlm_t *multi;
    uv_timer_t poll_timer;  /* looks for due deliveries */
    uv_timer_t cycle_timer; /* a failed cycle again */
    wh_transfer_t *running; /* transfers running */
    int inflight;          /* their number */
    int cycling, stopping;
    int64_t asked;         /* deliveries the cycle in flight may lease */
    json_t *results;       /* answers not yet recorded */
    json_t *recording_set; /* answers being recorded */
    char owner[96];
    char schedule[512];    /* {5,300,...} */
    int64_t nschedule;     /* its delays: a retriable failure after that many attempts fails the delivery */
    char per_endpoint[24], per_project[24], lease_s[24], disable_after[24];
    od_webhook_keys_t keys; /* open the endpoints' secrets */
    struct {
        od_metric_t *ok, *retry, *fail, *inflight, *latency, *refused;
        od_metric_t *succeeded, *failed, *retries; /* deliveries by final result; attempts after the first */
        od_metric_t *unopened; /* secrets that no key opens */
    } m;
};

static const double latency_buckets[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15};

static void cycle(wh_sender_t *s);

/* ---- one delivery ---- */

static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
    wh_transfer_t *t = clientp;
    (void)purpose;
    if (!t->s->o->conf->webhook_allow_private && od_webhook_addr_forbidden(&addr->addr)) {
        const void *a = addr->family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)&addr->addr)->sin6_addr
                                                 : (const void *)&((struct sockaddr_in *)&addr->addr)->sin_addr;
        if (inet_ntop(addr->family, a, t->refused, sizeof(t->refused)) == NULL)
            snprintf(t->refused, sizeof(t->refused), "?");
        return CURL_SOCKET_BAD;
    }
    return socket(addr->family, addr->socktype | SOCK_CLOEXEC, addr->protocol);
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    wh_transfer_t *t = arg;
    size_t len = size * n, room = SNIPPET_MAX - t->snippet_len;
    size_t take = len < room ? len : room;
    for (size_t i = 0; i < take; i++) /* printable ASCII only, for a log line */
        t->snippet[t->snippet_len++] = p[i] >= 0x20 && p[i] < 0x7f ? p[i] : ' ';
    t->snippet[t->snippet_len] = '\0';
    return len;
}

static void transfer_free(wh_transfer_t *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        t->s->running = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    od_curlm_remove(t->s->multi, t->easy);
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
    free(t->payload);
    free(t);
}

static int start(wh_sender_t *s, json_t *d)
{
    const char *id = json_string_value(json_object_get(d, "id"));
    const char *event_id = json_string_value(json_object_get(d, "event_id"));
    const char *url = json_string_value(json_object_get(d, "url"));
    const char *sealed = json_string_value(json_object_get(d, "secret"));
    const char *sealed_prev = json_string_value(json_object_get(d, "prev_secret"));
    const char *payload = json_string_value(json_object_get(d, "payload"));
    char secret[OD_WEBHOOK_SECRET_LEN + 1], prev_buf[OD_WEBHOOK_SECRET_LEN + 1], *prev = NULL;
    if (id == NULL || event_id == NULL || url == NULL || sealed == NULL || payload == NULL || strlen(id) != 36)
        return -1;
    /* a secret no key opens (a key rotated without OUTDIAL_SECRET_KEY_PREVIOUS): the delivery waits for its
     * lease to run out and is tried again, its attempts untouched, until the operator sets the key */
    if (od_webhook_secret_open(&s->keys, sealed, secret) < 0) {
        od_error("webhooks: delivery %s: the endpoint's secret cannot be opened with OUTDIAL_SECRET_KEY (or "
                 "OUTDIAL_SECRET_KEY_PREVIOUS); not sent",
                 id);
        od_metric_add(s->m.unopened, 1);
        return 0;
    }
    if (sealed_prev != NULL) {
        if (od_webhook_secret_open(&s->keys, sealed_prev, prev_buf) >= 0)
            prev = prev_buf;
        else /* the current secret still signs */
            od_warn("webhooks: delivery %s: the endpoint's previous secret cannot be opened; signed with the "
                    "current one only",
                    id);
    }
    wh_transfer_t *t = od_calloc(1, sizeof(*t));
    t->s = s;
    memcpy(t->id, id, 37);
    t->attempts = json_integer_value(json_object_get(d, "attempts"));
    t->payload = od_strdup(payload);
    size_t len = strlen(payload);
    int64_t ts = (int64_t)time(NULL);
    char sig[OD_WEBHOOK_SIG_SIZE], sig_prev[OD_WEBHOOK_SIG_SIZE], h[256];
    od_buf_t sh = OD_BUF_INIT;
    od_buf_puts(&sh, "webhook-signature: ");
    if (od_webhook_sign(secret, event_id, ts, payload, len, sig) == 0)
        od_buf_puts(&sh, sig);
    if (prev != NULL && od_webhook_sign(prev, event_id, ts, payload, len, sig_prev) == 0)
        od_buf_printf(&sh, " %s", sig_prev);
    OPENSSL_cleanse(secret, sizeof(secret));
    OPENSSL_cleanse(prev_buf, sizeof(prev_buf));
    snprintf(h, sizeof(h), "webhook-id: %s", event_id);
    t->headers = curl_slist_append(t->headers, h);
    snprintf(h, sizeof(h), "webhook-timestamp: %lld", (long long)ts);
    t->headers = curl_slist_append(t->headers, h);
    t->headers = curl_slist_append(t->headers, sh.base);
    t->headers = curl_slist_append(t->headers, "content-type: application/json");
    t->headers = curl_slist_append(t->headers, "expect:"); /* no 100-continue round trip */
    od_buf_free(&sh);

    const outcome_conf_t *conf = s->o->conf;
    CURL *e = t->easy = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROXY, ""); /* never through a proxy from the environment */
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)conf->webhook_timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)OD_MIN(conf->webhook_timeout_ms, 10000));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "outdial-webhooks/1");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, t->payload);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    t->started_ms = uv_now(s->o->loop);
    if (od_curlm_add(s->multi, e) != 0) {
        curl_easy_cleanup(e);
        curl_slist_free_all(t->headers);
        free(t->payload);
        free(t);
        return -1;
    }
    t->next = s->running;
    if (s->running != NULL)
        s->running->prev = t;
    s->running = t;
    s->inflight++;
    od_metric_set(s->m.inflight, s->inflight);
    return 0;
}

/* ok: 2xx; retry: no answer, 408, 429, 5xx; fail: anything else (410 disables the endpoint, in SQL). */
static void finished(wh_sender_t *s, wh_transfer_t *t, CURLcode rc)
{
    long code = 0;
    const char *result;
    char err[512];
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &code);
    if (rc != CURLE_OK && t->refused[0] != '\0') { /* (a name with a public address too may have connected) */
        result = "fail";
        code = 0;
        snprintf(err, sizeof(err), "address not allowed: %s is not a public address (OUTDIAL_WEBHOOK_ALLOW_PRIVATE)",
                 t->refused);
        od_metric_add(s->m.refused, 1);
    } else if (rc != CURLE_OK) {
        result = "retry";
        code = 0;
        snprintf(err, sizeof(err), "%s%s%s", curl_easy_strerror(rc), t->errbuf[0] ? ": " : "", t->errbuf);
    } else {
        result = code >= 200 && code < 300                               ? "ok"
                 : code == 408 || code == 429 || (code >= 500 && code < 600) ? "retry"
                                                                           : "fail";
        if (strcmp(result, "ok") == 0)
            err[0] = '\0';
        else
            snprintf(err, sizeof(err), "HTTP %ld%s%s", code, t->snippet_len ? ": " : "", t->snippet);
    }
    od_metric_add(result[0] == 'o' ? s->m.ok : result[0] == 'r' ? s->m.retry : s->m.fail, 1);
    /* the delivery's status as od_webhook_results will write it: succeeded, failed, or pending again */
    if (result[0] == 'o')
        od_metric_add(s->m.succeeded, 1);
    else if (result[0] == 'f' || t->attempts >= s->nschedule)
        od_metric_add(s->m.failed, 1);
    if (t->attempts > 0)
        od_metric_add(s->m.retries, 1);
    od_metric_observe(s->m.latency, (double)(uv_now(s->o->loop) - t->started_ms) / 1000.0);
    json_t *r = json_pack("{ss ss sI ss?}", "id", t->id, "result", result, "code", (json_int_t)code, "error",
                          err[0] ? err : NULL);
    if (r == NULL) /* not valid UTF-8, say: recorded without the text (the lease keeps it from being lost) */
        r = json_pack("{ss ss sI}", "id", t->id, "result", result, "code", (json_int_t)code);
    json_array_append_new(s->results, r);
    transfer_free(t);
    s->inflight--;
    od_metric_set(s->m.inflight, s->inflight);
}

static void on_done(void *arg, CURL *easy, CURLcode rc)
{
    wh_transfer_t *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    finished(arg, t, rc);
    cycle(arg);
}

/* ---- PostgreSQL ---- */

/*
 * One statement per cycle (od_webhook_cycle): records the answers collected
 * since the last one, which frees their endpoints' slots, and leases what
 * may go out now, in one round trip. Never two at once.
 */
static void on_cycle_timer(uv_timer_t *t);

static void on_cycled(void *arg, int status, PGresult *res)
{
    wh_sender_t *s = arg;
    s->cycling = 0;
    if (status != OD_PG_OK) {
        /* the answers are kept and recorded later: their deliveries stay leased to us meanwhile */
        od_warn("webhooks: recording %zu answers and leasing more: %s", json_array_size(s->recording_set),
                status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
        json_array_extend(s->recording_set, s->results);
        json_decref(s->results);
        s->results = s->recording_set;
        s->recording_set = NULL;
        uv_timer_start(&s->cycle_timer, on_cycle_timer, RETRY_MS, 0);
        outcome__drain_check(s->o);
        return;
    }
    json_decref(s->recording_set);
    s->recording_set = NULL;
    json_t *list = json_loads(PQgetvalue(res, 0, 0), 0, NULL), *d;
    size_t i, n = json_array_size(list);
    json_array_foreach(list, i, d)
    {
        if (start(s, d) != 0) /* its lease runs out and it is sent again */
            od_warn("webhooks: a delivery could not be started");
    }
    json_decref(list);
    /* a full lease may have left more due; answers may have come meanwhile */
    if ((n > 0 && (int64_t)n >= s->asked) || json_array_size(s->results) > 0)
        cycle(s);
    outcome__drain_check(s->o);
}

static void cycle(wh_sender_t *s)
{
    int64_t room = s->stopping ? 0 : s->o->conf->webhook_concurrency - s->inflight;
    if (s->cycling || (room <= 0 && json_array_size(s->results) == 0))
        return;
    char *r = json_dumps(s->results, JSON_COMPACT), limit[24];
    snprintf(limit, sizeof(limit), "%lld", (long long)room);
    const char *params[8] = {s->owner,        r, s->schedule, s->disable_after, limit, s->per_endpoint,
                             s->per_project, s->lease_s};
    if (od_pg_query(s->o->pg, "webhook_cycle", 8, params, on_cycled, s) == 0) {
        s->cycling = 1;
        s->asked = room;
        s->recording_set = s->results;
        s->results = json_array();
    } else if (!uv_is_active((uv_handle_t *)&s->cycle_timer)) {
        uv_timer_start(&s->cycle_timer, on_cycle_timer, RETRY_MS, 0);
    }
    free(r);
}

static void on_cycle_timer(uv_timer_t *t)
{
    cycle(t->data);
}

/* ---- set-up ---- */

/* "5,300,1800" → "{5,300,1800}" and *count 3: 0, or -1 if malformed. */
static int parse_schedule(const char *in, char *out, size_t size, int64_t *count)
{
    od_buf_t b = OD_BUF_INIT;
    const char *p = in;
    int n = 0;
    od_buf_puts(&b, "{");
    while (*p != '\0') {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 7 * 86400 || (*end != ',' && *end != '\0') || ++n > 20) {
            od_buf_free(&b);
            return -1;
        }
        od_buf_printf(&b, "%s%ld", n > 1 ? "," : "", v);
        p = *end == ',' ? end + 1 : end;
        if (*end == ',' && *p == '\0') {
            od_buf_free(&b);
            return -1;
        }
    }
    od_buf_puts(&b, "}");
    int rc = b.len < size ? 0 : -1;
    if (rc == 0)
        memcpy(out, b.base, b.len + 1);
    *count = n;
    od_buf_free(&b);
    return rc;
}

wh_sender_t *outcome__webhooks_start(outcome_t *o)
{
    const outcome_conf_t *conf = o->conf;
    wh_sender_t *s = od_calloc(1, sizeof(*s));
    s->o = o;
    if (parse_schedule(conf->webhook_retry_schedule, s->schedule, sizeof(s->schedule), &s->nschedule) != 0) {
        od_error("OUTDIAL_WEBHOOK_RETRY_SCHEDULE: \"%s\" is not a comma-separated list of 1 to 20 delays in seconds "
                 "(each from 1 to 604800)",
                 conf->webhook_retry_schedule);
        free(s);
        return NULL;
    }
    const char *why = NULL;
    if (od_webhook_keys_init(&s->keys, conf->secret_key, conf->secret_key_prev, &why) != 0) {
        od_error("%s: the webhook secrets are stored encrypted with it (docs/webhooks.md, \"Secrets at rest\"; "
                 "deploy/local/run.sh makes a local one)",
                 why);
        free(s);
        return NULL;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        od_error("webhooks: curl_global_init failed");
        od_webhook_keys_clear(&s->keys);
        free(s);
        return NULL;
    }
    od_instance_id(s->owner, sizeof(s->owner));
    snprintf(s->per_endpoint, sizeof(s->per_endpoint), "%lld", (long long)conf->webhook_per_endpoint);
    snprintf(s->per_project, sizeof(s->per_project), "%lld", (long long)conf->webhook_per_project);
    /* a lease outlives the longest attempt, so that no copy takes a delivery still being sent */
    snprintf(s->lease_s, sizeof(s->lease_s), "%lld", (long long)(conf->webhook_timeout_ms / 1000 + 45));
    snprintf(s->disable_after, sizeof(s->disable_after), "%lld", (long long)conf->webhook_disable_after_s);
    s->results = json_array();

    s->m.ok = od_counter("outdial_webhook_attempts_total", "result=\"ok\"", "webhook delivery attempts by result");
    s->m.retry = od_counter("outdial_webhook_attempts_total", "result=\"retry\"", "webhook delivery attempts by result");
    s->m.fail = od_counter("outdial_webhook_attempts_total", "result=\"fail\"", "webhook delivery attempts by result");
    s->m.succeeded = od_counter("outdial_webhook_deliveries_total", "result=\"succeeded\"",
                                "webhook deliveries ended by an attempt of this copy, by final result");
    s->m.failed = od_counter("outdial_webhook_deliveries_total", "result=\"failed\"",
                             "webhook deliveries ended by an attempt of this copy, by final result");
    s->m.retries = od_counter("outdial_webhook_retries_total", NULL,
                              "webhook attempts after a delivery's first (scheduled or manual retries)");
    s->m.refused = od_counter("outdial_webhook_refused_addresses_total", NULL,
                              "webhook connections refused because the address is not public");
    s->m.unopened = od_counter("outdial_webhook_secrets_unopened_total", NULL,
                               "webhook deliveries not sent because no key opens their endpoint's secret "
                               "(OUTDIAL_SECRET_KEY, OUTDIAL_SECRET_KEY_PREVIOUS)");
    s->m.inflight = od_gauge("outdial_webhook_inflight", NULL, "webhook requests in flight from this copy");
    s->m.latency = od_histogram("outdial_webhook_attempt_seconds", NULL, "duration of a webhook attempt",
                                latency_buckets, (int)OD_ARRAY_SIZE(latency_buckets));

    s->multi = od_curlm_new(o->loop, on_done, s);
    uv_timer_init(o->loop, &s->cycle_timer);
    s->cycle_timer.data = s;
    uv_timer_init(o->loop, &s->poll_timer);
    s->poll_timer.data = s;
    uv_timer_start(&s->poll_timer, on_cycle_timer, (uint64_t)conf->webhook_poll_ms, (uint64_t)conf->webhook_poll_ms);
    od_info("webhooks: sending as %s, %lld at once (%lld per endpoint, %lld per project), %lld ms timeout, retries "
            "after %s s; secrets opened with key %s%s%s",
            s->owner, (long long)conf->webhook_concurrency, (long long)conf->webhook_per_endpoint,
            (long long)conf->webhook_per_project, (long long)conf->webhook_timeout_ms, s->schedule, s->keys.kid,
            s->keys.has_prev ? " and previous key " : "", s->keys.has_prev ? s->keys.prev_kid : "");
    return s;
}

void outcome__webhooks_drain(wh_sender_t *s)
{
    s->stopping = 1;
    uv_timer_stop(&s->poll_timer);
}

int outcome__webhooks_busy(const wh_sender_t *s)
{
    return s->inflight > 0 || s->cycling || json_array_size(s->results) > 0;
}

void outcome__webhooks_close(wh_sender_t *s)
{
    /* transfers still running (a drain that timed out) are dropped: their leases run out and another copy sends them */
    while (s->running != NULL)
        transfer_free(s->running);
    od_curlm_close(s->multi);
    uv_close((uv_handle_t *)&s->poll_timer, NULL);
    uv_close((uv_handle_t *)&s->cycle_timer, NULL);
    json_decref(s->results);
    json_decref(s->recording_set);
    od_webhook_keys_clear(&s->keys);
    curl_global_cleanup();
    /* the handles are closed on the next loop turn; the struct lives until the process ends */
}
