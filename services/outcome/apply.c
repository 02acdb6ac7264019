/*
 * calls.events → od_apply_events, in batches. A message is done only after
 * PostgreSQL committed its batch, so an offset is never committed before its
 * event is stored. Re-applying an event (after a crash between commit and
 * offset commit, or a redelivery after a rebalance) is harmless: statuses
 * only move forward and duplicates are ignored by od_apply_events.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "od/call.h"
#include "od/core.h"
#include "od/log.h"
#include "outcome.h"

/* SQL errors worth retrying the whole batch for (not the input's fault, e.g.
 * a deadlock between two outcome copies debiting the same wallet). Anything
 * else is isolated event by event. */
static int pg_retriable(const PGresult *res)
{
    return od_pg_error_kind(res) == OD_PG_ERR_RETRIABLE;
}

static void batch_push(obatch_t *b, const oevent_t *ev)
{
    if (b->n == b->cap) {
        b->cap = b->cap == 0 ? 64 : b->cap * 2;
        b->ev = od_realloc(b->ev, sizeof(*b->ev) * (size_t)b->cap);
    }
    b->ev[b->n++] = *ev;
}

static void batch_clear(obatch_t *b)
{
    for (int i = 0; i < b->n; i++)
        free(b->ev[i].json);
    b->n = 0;
}

static void json_str_or_null(od_buf_t *b, const char *s)
{
    if (s == NULL)
        od_buf_puts(b, "null");
    else
        od_buf_json_str(b, s, strlen(s));
}

/* The element od_apply_events takes for one event; `short_call_ms`: a
 * completed call that the callee hung up in less talk time than this is a
 * short hang-up (the caller reputation's signal, docs/reputation.md). */
static char *event_json(const od_call_event_t *ev, int64_t short_call_ms)
{
    od_buf_t b = OD_BUF_INIT;
    od_buf_printf(&b, "{\"call_id\":\"%s\",\"status\":\"%s\",\"allowed_from\":\"%s\",\"final_state\":", ev->call_id,
                  od_call_status_name(ev->status), od_call_allowed_from(ev->status));
    json_str_or_null(&b, od_final_state_name(ev->final_state));
    od_buf_puts(&b, ",\"outcome\":");
    json_str_or_null(&b, od_outcome_name(ev->outcome));
    od_buf_printf(&b, ",\"goal_completed\":%s", ev->goal_completed < 0 ? "null" : ev->goal_completed ? "true" : "false");
    if (ev->duration_ms >= 0)
        od_buf_printf(&b, ",\"duration_ms\":%lld", (long long)ev->duration_ms);
    else
        od_buf_puts(&b, ",\"duration_ms\":null");
    od_buf_printf(&b, ",\"opted_out\":%s,\"at_us\":%lld,\"detail\":", ev->opted_out ? "true" : "false",
                  (long long)ev->at_us);
    json_str_or_null(&b, ev->detail[0] != '\0' ? ev->detail : NULL);
    if (ev->component[0] != '\0')
        od_buf_printf(&b, ",\"component\":\"%s\"", ev->component); /* one of three names (od_call_event_decode) */
    if (ev->recording != NULL) { /* od_recording (016_recordings.sql) stores it with the final state */
        od_buf_puts(&b, ",\"recording\":");
        od_call_recording_encode(ev->recording, &b);
    }
    if (ev->final_state == OD_FINAL_COMPLETED) {
        int is_short = ev->hangup_by == OD_HANGUP_CALLEE && ev->duration_ms >= 0 && ev->duration_ms < short_call_ms;
        od_buf_printf(&b, ",\"short_hangup\":%s", is_short ? "true" : "false");
        if (ev->hangup_by != OD_HANGUP_UNKNOWN)
            od_buf_printf(&b, ",\"hangup_by\":\"%s\"", od_hangup_by_name(ev->hangup_by));
    }
    od_buf_puts(&b, "}");
    return b.base;
}

static void on_flush_timer(uv_timer_t *t);

void outcome__on_message(void *arg, const rd_kafka_message_t *msg, od_ktoken_t tok)
{
    outcome_t *o = arg;
    if (o->draining)
        return; /* not done: redelivered after the restart or to another copy */
    od_call_event_t ev;
    char err[256];
    if (od_call_event_decode(msg->payload, msg->len, &ev, err, sizeof(err)) != 0) {
        char key[37] = "";
        if (msg->key_len == 36 && od_uuid_check(msg->key, 36) == 0)
            memcpy(key, msg->key, 36);
        od_log(OD_LOG_ERROR, key[0] ? key : NULL, "poison event at partition %d offset %lld skipped: %s",
               (int)tok.partition, (long long)tok.offset, err);
        od_metric_add(o->m.poison, 1);
        od_kcons_done(o->kcons, tok);
        return;
    }
    oevent_t oev = {event_json(&ev, (int64_t)(o->conf->rep_short_call_s * 1000.0)), tok, "", ev.at_us};
    od_call_event_clear(&ev);
    memcpy(oev.call_id, ev.call_id, sizeof(oev.call_id));
    batch_push(&o->open, &oev);
    od_log(OD_LOG_DEBUG, ev.call_id, "event %s%s%s", od_call_status_name(ev.status), ev.detail[0] ? ": " : "",
           ev.detail);

    if (o->flight.n == 0 && o->open.n >= o->conf->batch_max) {
        outcome__flush(o);
    } else if (o->flight.n == 0) {
        if (!uv_is_active((uv_handle_t *)&o->flush_timer))
            uv_timer_start(&o->flush_timer, on_flush_timer, 0, 0); /* next loop turn */
    } else if (o->open.n >= o->conf->batch_max && !o->paused) {
        /* a batch in flight and the next one full: stop fetching until it is applied */
        o->paused = 1;
        od_kcons_pause(o->kcons);
    }
}

/* ---- the batch in flight ---- */

static void send_flight(outcome_t *o);

static void on_flush_timer(uv_timer_t *t)
{
    outcome_t *o = t->data;
    /* The timer may have been started (a first event, flush on the next loop
     * turn) before the same turn's events filled a batch and sent it: that
     * flight is in PostgreSQL now, and its answer sends the next one. Sending
     * it again would put two answers on one flight, and the second would be
     * taken for the next flight's: offsets committed for events whose
     * transaction then failed (found by tests/system/test_scale_out.py). */
    if (o->inflight)
        return;
    if (o->flight.n > 0)
        send_flight(o); /* the retry of a failed batch */
    else
        outcome__flush(o);
}

static void retry_later(outcome_t *o, const char *why)
{
    unsigned ms = outcome__backoff(&o->backoff_ms);
    od_warn("applying %d events failed (%s): retrying in %u ms", o->isolate ? 1 : o->flight.n, why, ms);
    uv_timer_start(&o->flush_timer, on_flush_timer, ms, 0);
}

/* Every event of flight is stored (or skipped): commit their offsets, take the next batch. */
static void flight_done(outcome_t *o)
{
    batch_clear(&o->flight);
    o->isolate = 0;
    o->iso_i = 0;
    if (o->paused && !o->draining) {
        o->paused = 0;
        od_kcons_resume(o->kcons);
    }
    if (o->open.n > 0)
        outcome__flush(o);
    else
        outcome__drain_check(o);
}

static void events_applied(outcome_t *o, const oevent_t *ev, int n, int applied)
{
    int64_t now = od_now_us();
    od_metric_add(o->m.applied, applied);
    od_metric_add(o->m.ignored, n - applied);
    for (int i = 0; i < n; i++) {
        od_metric_observe(o->m.latency, (double)(now - ev[i].at_us) / 1e6);
        od_kcons_done(o->kcons, ev[i].tok);
    }
}

static void on_applied(void *arg, int status, PGresult *res)
{
    outcome_t *o = arg;
    o->inflight = 0;
    if (status == OD_PG_EUNAVAIL) {
        retry_later(o, "postgresql unavailable");
        return;
    }
    if (status == OD_PG_EQUERY && pg_retriable(res)) {
        retry_later(o, od_pg_errmsg(res));
        return;
    }
    o->backoff_ms = 0;
    if (status == OD_PG_EQUERY) {
        if (!o->isolate && o->flight.n > 1) {
            /* one bad event fails the whole transaction: find it by applying them one by one, in order */
            od_warn("a batch of %d events failed (%s %s): applying them one by one", o->flight.n,
                    od_pg_sqlstate(res), od_pg_errmsg(res));
            o->isolate = 1;
            o->iso_i = 0;
            send_flight(o);
            return;
        }
        const oevent_t *ev = &o->flight.ev[o->isolate ? o->iso_i : 0];
        od_log(OD_LOG_ERROR, ev->call_id, "poison event skipped (%s %s): %s", od_pg_sqlstate(res), od_pg_errmsg(res),
               ev->json);
        od_metric_add(o->m.poison, 1);
        od_kcons_done(o->kcons, ev->tok);
    } else {
        int applied = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
        if (o->isolate)
            events_applied(o, &o->flight.ev[o->iso_i], 1, applied);
        else
            events_applied(o, o->flight.ev, o->flight.n, applied);
    }
    if (o->isolate && ++o->iso_i < o->flight.n) {
        send_flight(o);
        return;
    }
    flight_done(o);
}

static void send_flight(outcome_t *o)
{
    assert(!o->inflight && o->flight.n > 0);
    od_buf_t b = OD_BUF_INIT;
    int from = o->isolate ? o->iso_i : 0, to = o->isolate ? o->iso_i + 1 : o->flight.n;
    od_buf_puts(&b, "[");
    for (int i = from; i < to; i++) {
        if (i > from)
            od_buf_puts(&b, ",");
        od_buf_puts(&b, o->flight.ev[i].json);
    }
    od_buf_puts(&b, "]");
    const char *params[1] = {b.base};
    if (od_pg_query(o->pg, "apply", 1, params, on_applied, o) == 0)
        o->inflight = 1;
    else
        retry_later(o, "no postgresql connection");
    od_buf_free(&b);
}

void outcome__flush(outcome_t *o)
{
    if (o->flight.n > 0 || o->open.n == 0)
        return;
    int k = (int)OD_MIN((int64_t)o->open.n, o->conf->batch_max);
    if (k == o->open.n) {
        /* the open batch becomes the flight; the flight's empty storage becomes the open batch */
        obatch_t t = o->flight;
        o->flight = o->open;
        o->open = t;
    } else {
        for (int i = 0; i < k; i++)
            batch_push(&o->flight, &o->open.ev[i]);
        memmove(o->open.ev, o->open.ev + k, sizeof(*o->open.ev) * (size_t)(o->open.n - k));
        o->open.n -= k;
    }
    od_metric_observe(o->m.batch_size, o->flight.n);
    send_flight(o);
}

void outcome__apply_init(outcome_t *o)
{
    uv_timer_init(o->loop, &o->flush_timer);
    o->flush_timer.data = o;
}

void outcome__apply_close(outcome_t *o)
{
    uv_close((uv_handle_t *)&o->flush_timer, NULL);
    batch_clear(&o->open);
    batch_clear(&o->flight);
    free(o->open.ev);
    free(o->flight.ev);
}
