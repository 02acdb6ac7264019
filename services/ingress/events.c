/*
 * GET /v1/events: Server-Sent Events of a project's calls (docs/events.md).
 *
 * One poll per ingress, not per stream: every EVENTS_POLL_MS a single
 * statement (od_events_since) reads the new call events of every project
 * with an open stream, and each stream gets its project's. A stream that
 * starts (or resumes with Last-Event-ID) first catches up on its own from
 * its cursor until it has reached the shared one; only then does it take
 * the shared poll's events. Cursors are (transaction id, event id): see
 * proto/sql/008_events.sql for why that order has no gaps.
 *
 * A stream whose client reads slower than its events come (over
 * EVENTS_MAX_PENDING bytes waiting) is ended; the client reconnects with its
 * Last-Event-ID and loses nothing. Draining ends every stream the same way.
 *
 * A stream is authenticated when it opens, and its key again every
 * OUTDIAL_AUTH_CACHE_MS (one query for all the streams of this ingress): a
 * stream whose key was revoked is ended, as any request of that key is
 * refused, within that time; its reconnection gets 401.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingress_int.h"
#include "od/core.h"
#include "od/log.h"

#define EVENTS_POLL_MS 250
#define EVENTS_HEARTBEAT_MS 15000
#define EVENTS_PAGE 1000
#define EVENTS_MAX_PENDING (1u << 20)

typedef od_event_cursor_t cursor_t;

struct sse_stream {
    ctx_t *ctx;
    ingress_t *in;
    od_http_stream_t *stream;
    cursor_t cur;
    int live;           /* caught up: takes the shared poll's events */
    int polled;         /* its project is in the shared poll in flight */
    int query_inflight; /* its own catch-up query */
    int ready;          /* h2o took the last chunk */
    int gone;           /* the request is over: nothing refers to the stream any more */
    int ending;         /* to be ended as soon as h2o takes the last chunk */
    int overflow;       /* over EVENTS_MAX_PENDING: takes no more events, to be ended */
    od_buf_t pending;
    int64_t sent_ms;
    int64_t opened_ms; /* monotonic: a key check sent before it does not judge it */
    sse_stream_t *prev, *next;
};

static struct {
    od_metric_t *open, *sent, *dropped;
} m;

static int cursor_cmp(cursor_t a, cursor_t b)
{
    return a.xid != b.xid ? (a.xid < b.xid ? -1 : 1) : (a.id > b.id) - (a.id < b.id);
}

/* "xid-id", as in the events' `id:` and in Last-Event-ID: 0, or -1 if malformed. */
static int cursor_parse(const char *s, size_t len, cursor_t *c)
{
    char buf[48], *end;
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[0] < '0' || buf[0] > '9')
        return -1;
    errno = 0;
    c->xid = strtoull(buf, &end, 10);
    if (*end != '-' || end[1] < '0' || end[1] > '9')
        return -1;
    c->id = strtoll(end + 1, &end, 10);
    return *end == '\0' && errno == 0 ? 0 : -1; /* out of range: not one of ours */
}

/* The [xid, id] array of od_events_since. */
static cursor_t cursor_of(json_t *a)
{
    cursor_t c = {0, 0};
    const char *x = json_string_value(json_array_get(a, 0));
    if (x != NULL)
        c.xid = strtoull(x, NULL, 10);
    c.id = (int64_t)json_integer_value(json_array_get(a, 1));
    return c;
}

/* ---- one stream ---- */

static void stream_free(sse_stream_t *s)
{
    ingress_t *in = s->in;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        in->sse_head = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    in->sse_count--;
    od_metric_add(m.open, -1);
    od_buf_free(&s->pending);
    ingress__ctx_free(s->ctx);
    free(s);
}

static void stream_maybe_free(sse_stream_t *s)
{
    if (s->gone && !s->query_inflight)
        stream_free(s);
}

static void stream_flush(sse_stream_t *s)
{
    if (s->gone || s->ending || !s->ready || s->pending.len == 0)
        return;
    s->ready = 0;
    od_http_stream_send(s->stream, s->pending.base, s->pending.len, 0);
    od_buf_reset(&s->pending);
    s->sent_ms = od_mono_ms();
}

/*
 * Ends the stream as failed (the client reconnects with Last-Event-ID). A
 * chunk h2o still holds is let go first: then on_proceed ends it.
 */
static void stream_end(sse_stream_t *s, const char *why)
{
    if (s->gone || s->ending)
        return;
    od_info("events stream of project %s ended: %s", s->ctx->key.project_id, why);
    od_metric_add(m.dropped, 1);
    s->ending = 1;
    od_buf_free(&s->pending); /* never sent now: not kept until h2o lets the stream go */
    if (s->ready) {
        od_http_stream_abort(s->stream); /* no callback after this */
        s->gone = 1;
        s->stream = NULL;
        stream_maybe_free(s);
    }
}

/* Queues one event: `id: xid-id`, `event: call.<status>`, `data: {...}`. */
static void stream_event(sse_stream_t *s, cursor_t c, json_t *ev)
{
    if (s->ending || s->gone || s->overflow)
        return;
    const char *status = json_string_value(json_object_get(ev, "status"));
    char *data = json_dumps(ev, JSON_COMPACT);
    od_buf_printf(&s->pending, "id: %" PRIu64 "-%lld\nevent: call.%s\ndata: %s\n\n", c.xid, (long long)c.id,
                  status ? status : "unknown", data ? data : "{}");
    free(data);
    s->cur = c;
    od_metric_add(m.sent, 1);
    if (s->pending.len > EVENTS_MAX_PENDING)
        s->overflow = 1; /* checked while appending: a page cannot grow it past the cap; ended by the caller */
}

static void on_proceed(void *arg)
{
    sse_stream_t *s = arg;
    s->ready = 1;
    if (s->ending) {
        od_http_stream_abort(s->stream);
        s->gone = 1;
        s->stream = NULL;
        stream_maybe_free(s);
        return;
    }
    stream_flush(s);
}

static void on_gone(void *arg)
{
    sse_stream_t *s = arg;
    s->gone = 1;
    s->stream = NULL;
    stream_maybe_free(s);
}

/* ---- catching up, one stream at a time ---- */

static void catch_up(sse_stream_t *s);

static void on_catch_up(void *arg, int status, PGresult *res)
{
    sse_stream_t *s = arg;
    s->query_inflight = 0;
    if (s->gone || s->ending) {
        stream_maybe_free(s);
        return;
    }
    if (status != OD_PG_OK) {
        stream_end(s, res ? od_pg_errmsg(res) : "database unavailable");
        return;
    }
    json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL), *events = json_object_get(r, "events"), *e;
    size_t i;
    json_array_foreach(events, i, e) stream_event(s, cursor_of(e), json_array_get(e, 3));
    cursor_t next = cursor_of(json_object_get(r, "next"));
    if (cursor_cmp(next, s->cur) > 0)
        s->cur = next;
    json_decref(r);
    stream_flush(s);
    if (s->overflow || s->pending.len > EVENTS_MAX_PENDING) {
        stream_end(s, "the client reads too slowly");
        return;
    }
    ingress_t *in = s->in;
    if (in->sse_cursor_set && cursor_cmp(s->cur, in->sse_cursor) >= 0)
        s->live = 1; /* from here the shared poll has everything after its cursor */
    else if (json_array_size(events) == EVENTS_PAGE)
        catch_up(s);
    /* else: the next tick tries again (the shared cursor moved on meanwhile) */
}

static void catch_up(sse_stream_t *s)
{
    char xid[24], id[24], projects[48];
    snprintf(xid, sizeof(xid), "%" PRIu64, s->cur.xid);
    snprintf(id, sizeof(id), "%lld", (long long)s->cur.id);
    snprintf(projects, sizeof(projects), "{%s}", s->ctx->key.project_id);
    char lim[16];
    snprintf(lim, sizeof(lim), "%d", EVENTS_PAGE);
    const char *params[4] = {xid, id, projects, lim};
    if (od_pg_query(s->in->pg, "events_since", 4, params, on_catch_up, s) == 0)
        s->query_inflight = 1;
    else
        stream_end(s, "database unavailable");
}

/* ---- the shared poll ---- */

static void on_poll(void *arg, int status, PGresult *res)
{
    ingress_t *in = arg;
    in->sse_polling = 0;
    if (status != OD_PG_OK) {
        if (status == OD_PG_EQUERY)
            od_error("events poll: %s", od_pg_errmsg(res));
        return;
    }
    json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL), *events = json_object_get(r, "events"), *e;
    size_t i;
    json_array_foreach(events, i, e)
    {
        cursor_t c = cursor_of(e);
        const char *project = json_string_value(json_array_get(e, 2));
        for (sse_stream_t *s = in->sse_head; s != NULL; s = s->next)
            if (s->live && s->polled && !s->gone && !s->ending && project != NULL &&
                strcmp(project, s->ctx->key.project_id) == 0 && cursor_cmp(c, s->cur) > 0)
                stream_event(s, c, json_array_get(e, 3));
    }
    in->sse_cursor = cursor_of(json_object_get(r, "next"));
    in->sse_cursor_set = 1;
    json_decref(r);
    int64_t now = od_mono_ms();
    for (sse_stream_t *s = in->sse_head, *next; s != NULL; s = next) {
        next = s->next;
        int polled = s->polled;
        s->polled = 0;
        if (s->gone || s->ending)
            continue;
        if (s->live && !polled)
            s->live = 0; /* live after the poll was sent: its project's events were not read; catch up again */
        if (s->live && cursor_cmp(in->sse_cursor, s->cur) > 0)
            s->cur = in->sse_cursor;
        if (s->pending.len == 0 && now - s->sent_ms >= EVENTS_HEARTBEAT_MS)
            od_buf_puts(&s->pending, ": heartbeat\n\n"); /* keeps proxies from closing an idle stream */
        stream_flush(s);
        if (s->overflow || s->pending.len > EVENTS_MAX_PENDING)
            stream_end(s, "the client reads too slowly");
        else if (!s->live && !s->query_inflight)
            catch_up(s);
    }
}

/* ---- revocation: the streams' keys checked again ---- */

static void on_keys_live(void *arg, int status, PGresult *res)
{
    ingress_t *in = arg;
    in->sse_keycheck_inflight = 0;
    if (status != OD_PG_OK) {
        if (status == OD_PG_EQUERY)
            od_error("events key check: %s", od_pg_errmsg(res));
        return; /* tried again at the next check; a stream is never kept on a guess of the database's */
    }
    const char *live = PQgetvalue(res, 0, 0); /* "{uuid,uuid,...}" of the keys not revoked */
    for (sse_stream_t *s = in->sse_head, *next; s != NULL; s = next) {
        next = s->next;
        if (!s->gone && !s->ending && s->opened_ms < in->sse_keycheck_ms && strstr(live, s->ctx->key.key_id) == NULL)
            stream_end(s, "its API key was revoked");
    }
}

static void keys_check(ingress_t *in, int64_t now)
{
    if (in->sse_keycheck_inflight || now - in->sse_keycheck_ms < in->conf->auth_cache_ms)
        return;
    od_buf_t keys = OD_BUF_INIT;
    od_buf_puts(&keys, "{");
    int n = 0;
    for (sse_stream_t *s = in->sse_head; s != NULL; s = s->next)
        if (!s->gone && !s->ending && strstr(keys.base, s->ctx->key.key_id) == NULL)
            od_buf_printf(&keys, "%s%s", n++ ? "," : "", s->ctx->key.key_id);
    od_buf_puts(&keys, "}");
    const char *params[1] = {keys.base};
    if (n > 0 && od_pg_query(in->pg, "events_keys_live", 1, params, on_keys_live, in) == 0) {
        in->sse_keycheck_inflight = 1;
        in->sse_keycheck_ms = now;
    }
    od_buf_free(&keys);
}

static void on_tick(uv_timer_t *t)
{
    ingress_t *in = t->data;
    if (in->sse_head != NULL)
        keys_check(in, od_mono_ms());
    if (in->sse_head == NULL || in->sse_polling)
        return;
    /* the projects with a stream, as a PostgreSQL array literal */
    od_buf_t projects = OD_BUF_INIT;
    od_buf_puts(&projects, "{");
    int n = 0;
    for (sse_stream_t *s = in->sse_head; s != NULL; s = s->next) {
        s->polled = !s->gone;
        if (s->gone || strstr(projects.base, s->ctx->key.project_id) != NULL)
            continue;
        od_buf_printf(&projects, "%s%s", n++ ? "," : "", s->ctx->key.project_id);
    }
    od_buf_puts(&projects, "}");
    char xid[24], id[24], lim[16];
    snprintf(xid, sizeof(xid), "%" PRIu64, in->sse_cursor.xid);
    snprintf(id, sizeof(id), "%lld", (long long)in->sse_cursor.id);
    snprintf(lim, sizeof(lim), "%d", EVENTS_PAGE * 10);
    if (!in->sse_cursor_set) {
        /* the first poll: from the oldest stream's cursor (they all catch up to what it returns) */
        cursor_t low = in->sse_head->cur;
        for (sse_stream_t *s = in->sse_head; s != NULL; s = s->next)
            if (cursor_cmp(s->cur, low) < 0)
                low = s->cur;
        snprintf(xid, sizeof(xid), "%" PRIu64, low.xid);
        snprintf(id, sizeof(id), "%lld", (long long)low.id);
        in->sse_cursor = low;
    }
    const char *params[4] = {xid, id, projects.base, lim};
    if (n > 0 && od_pg_query(in->pg, "events_since", 4, params, on_poll, in) == 0)
        in->sse_polling = 1;
    od_buf_free(&projects);
}

/* ---- opening ---- */

static void on_opened(void *arg, int status, PGresult *res)
{
    ctx_t *ctx = arg;
    if (status != OD_PG_OK) {
        ingress__reply_failed(ctx, status, res, "events");
        ingress__ctx_free(ctx);
        return;
    }
    json_t *r = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    ctx->rl = json_incref(json_object_get(r, "rl"));
    int http = (int)json_integer_value(json_object_get(r, "status"));
    h2o_req_t *req = ingress__req(ctx);
    if (http != 200 || req == NULL) {
        const char *code = json_string_value(json_object_get(r, "code"));
        ingress__reply_problem(ctx, http ? http : 503, code ? code : "service_unavailable",
                               http == 429 ? "too many requests for this API key; see Retry-After"
                                           : "the event stream could not be opened",
                               NULL);
        json_decref(r);
        ingress__ctx_free(ctx);
        return;
    }
    ingress_t *in = ctx->in;
    sse_stream_t *s = od_calloc(1, sizeof(*s));
    s->ctx = ctx;
    s->in = in;
    s->opened_ms = od_mono_ms();
    /* resume after Last-Event-ID (checked in ingress__events), else from now */
    h2o_iovec_t last = od_http_header(req, "last-event-id");
    if (last.base == NULL || cursor_parse(last.base, last.len, &s->cur) != 0)
        s->cur = cursor_of(json_object_get(r, "head"));
    json_decref(r);
    od_http_add_header(req, "cache-control", "no-cache");
    od_http_add_header(req, "x-accel-buffering", "no");
    ingress__ratelimit_headers(req, ctx->rl);
    ctx->answered = 1;
    s->next = in->sse_head;
    if (in->sse_head != NULL)
        in->sse_head->prev = s;
    in->sse_head = s;
    in->sse_count++;
    od_metric_add(m.open, 1);
    s->stream = od_http_stream_start(req, 200, "text/event-stream; charset=utf-8", on_proceed, on_gone, s);
    s->ready = 1;
    /* a first line at once, so the client knows the stream is open; retry: how soon to reconnect */
    od_buf_puts(&s->pending, ": open\nretry: 2000\n\n");
    stream_flush(s);
    catch_up(s);
}

static void on_cursor_checked(void *arg, int status, PGresult *res)
{
    ctx_t *ctx = arg;
    if (status != OD_PG_OK) {
        ingress__reply_failed(ctx, status, res, "events resume");
        ingress__ctx_free(ctx);
        return;
    }
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        char detail[200];
        snprintf(detail, sizeof(detail),
                 "Last-Event-ID is not an event of this project from the last %lld s: open the stream without it "
                 "and read what was missed from GET /v1/calls?since=",
                 (long long)ctx->in->conf->events_resume_window_s);
        ingress__reply_problem(ctx, 410, "last_event_id_expired", detail,
                               "[{\"field\":\"Last-Event-ID\",\"code\":\"last_event_id_expired\","
                               "\"message\":\"unknown or too old a resume point\"}]");
        ingress__ctx_free(ctx);
        return;
    }
    ingress__api_run(ctx, "events_api", "open_events", json_object(), on_opened);
}

void ingress__events(ctx_t *ctx, h2o_req_t *req)
{
    h2o_iovec_t last = od_http_header(req, "last-event-id");
    cursor_t c;
    if (last.base != NULL && cursor_parse(last.base, last.len, &c) != 0) {
        ingress__bad_param(ctx, "Last-Event-ID", "must be the id of an event of this stream");
        return;
    }
    if (ctx->in->sse_count >= ctx->in->conf->events_max_streams) {
        ingress__reply_problem(ctx, 503, "too_many_streams",
                               "this ingress holds as many event streams as it may; retry on another", NULL);
        ingress__ctx_free(ctx);
        return;
    }
    int64_t mine = 0;
    for (sse_stream_t *s = ctx->in->sse_head; s != NULL; s = s->next)
        mine += !s->gone && !s->ending && strcmp(s->ctx->key.key_id, ctx->key.key_id) == 0;
    if (mine >= ctx->in->conf->events_max_streams_per_key) {
        /* one key cannot take the streams every other tenant needs */
        ingress__reply_problem(ctx, 429, "too_many_streams",
                               "this API key has as many event streams open as it may; close one first", NULL);
        ingress__ctx_free(ctx);
        return;
    }
    if (last.base == NULL) {
        ingress__api_run(ctx, "events_api", "open_events", json_object(), on_opened);
        return;
    }
    /* a resume point must be one of the project's events within the window: an old or unknown one
     * would read every project's history since then */
    char xid[24], id[24], window[24];
    snprintf(xid, sizeof(xid), "%" PRIu64, c.xid);
    snprintf(id, sizeof(id), "%lld", (long long)c.id);
    snprintf(window, sizeof(window), "%lld", (long long)ctx->in->conf->events_resume_window_s);
    const char *params[4] = {xid, id, window, ctx->key.project_id};
    if (od_pg_query(ctx->in->pg, "events_cursor_fresh", 4, params, on_cursor_checked, ctx) != 0) {
        ingress__reply_unavailable(ctx);
        ingress__ctx_free(ctx);
    }
}

void ingress__events_init(ingress_t *in)
{
    uv_timer_init(in->svc->loop, &in->sse_timer);
    in->sse_timer.data = in;
    uv_timer_start(&in->sse_timer, on_tick, EVENTS_POLL_MS, EVENTS_POLL_MS);
    m.open = od_gauge("outdial_ingress_event_streams", NULL, "GET /v1/events streams open");
    m.sent = od_counter("outdial_ingress_events_sent_total", NULL, "events written to event streams");
    m.dropped = od_counter("outdial_ingress_event_streams_ended_total", NULL,
                           "event streams ended by the ingress (slow client, database unavailable, drain)");
}

void ingress__events_drain(ingress_t *in)
{
    uv_timer_stop(&in->sse_timer);
    for (sse_stream_t *s = in->sse_head, *next; s != NULL; s = next) {
        next = s->next;
        stream_end(s, "this ingress is shutting down");
    }
}
