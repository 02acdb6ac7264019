/*
 * The lease reaper: a call whose dialer stopped renewing its lease (crash,
 * partition, drain timeout) ends as internal_error; it is never dialed again
 * (guarantee 1). Every outcome copy runs it: od_reap locks with SKIP LOCKED.
 * Also the chores: folding the batches' counter deltas into their counters
 * and finishing the batches that are done, folding the caller reputation's
 * deltas into its 5-minute buckets, deleting the recordings past their
 * project's retention (one index probe per project; all three every reaper
 * interval), deleting the finished webhook deliveries past
 * OUTDIAL_WEBHOOK_RETENTION_DAYS (every reaper interval too: one probe of
 * an index when there is nothing to do, batches of 1,000 one after another
 * when there is), and expiring idempotency records past their keep time
 * (every 10 minutes).
 *
 * Each is a chore: one statement with one parameter, answering a count, run
 * by a timer, never twice at once; a count at its limit runs it again at once.
 */
#include <stdio.h>
#include <stdlib.h>

#include "od/core.h"
#include "od/log.h"
#include "outcome.h"

#define REAP_LIMIT 1000
#define COMPACT_LIMIT 10000
#define RECORDINGS_LIMIT 1000
#define WEBHOOK_EXPIRY_LIMIT 1000 /* as in the statement (outcome.c) */
#define EXPIRE_EVERY_MS (10 * 60 * 1000)

static void on_chore_timer(uv_timer_t *t);

static void on_chore_done(void *arg, int status, PGresult *res)
{
    outcome_chore_t *c = arg;
    outcome_t *o = c->o;
    c->inflight = 0;
    if (status != OD_PG_OK) {
        od_warn("%s: %s", c->what, status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
        return;
    }
    int n = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
    od_metric_add(c->metric, n);
    if (n > 0 && c->report != NULL)
        c->report(o, n);
    if (c->limit > 0 && n >= c->limit && !o->draining)
        uv_timer_start(&c->timer, on_chore_timer, 0, c->every_ms); /* more left */
}

static void on_chore_timer(uv_timer_t *t)
{
    outcome_chore_t *c = t->data;
    if (c->inflight)
        return;
    char param[24];
    snprintf(param, sizeof(param), "%lld", (long long)c->param);
    const char *params[1] = {param};
    if (od_pg_query(c->o->pg, c->stmt, 1, params, on_chore_done, c) == 0)
        c->inflight = 1;
}

static void chore_start(outcome_t *o, outcome_chore_t *c, const char *what, const char *stmt, int64_t param,
                        int limit, uint64_t every_ms, od_metric_t *metric, void (*report)(outcome_t *o, int n))
{
    c->o = o;
    c->what = what;
    c->stmt = stmt;
    c->param = param;
    c->limit = limit;
    c->every_ms = every_ms;
    c->metric = metric;
    c->report = report;
    uv_timer_init(o->loop, &c->timer);
    c->timer.data = c;
    uv_timer_start(&c->timer, on_chore_timer, every_ms, every_ms);
}

static void report_reaped(outcome_t *o, int n)
{
    (void)o;
    od_warn("reaper: %d calls whose dialer stopped renewing its lease ended as internal_error", n);
}

static void report_expired(outcome_t *o, int n)
{
    od_info("idempotency expiry: %d records older than %lld s deleted", n, (long long)o->conf->idem_keep_s);
}

static void report_recordings(outcome_t *o, int n)
{
    (void)o;
    od_info("recordings: %d deleted after their project's retention period", n);
}

static void report_webhooks_expired(outcome_t *o, int n)
{
    od_info("webhook retention: %d finished deliveries older than %lld days deleted", n,
            (long long)o->conf->webhook_retention_days);
}

void outcome__reaper_start(outcome_t *o)
{
    uint64_t every = (uint64_t)o->conf->reaper_interval_ms;
    chore_start(o, &o->reap, "reaper", "reap", REAP_LIMIT, REAP_LIMIT, every, o->m.reaped, report_reaped);
    chore_start(o, &o->compact, "batch counters", "batch_compact", COMPACT_LIMIT, COMPACT_LIMIT, every,
                o->m.compacted, NULL);
    chore_start(o, &o->recordings, "recording expiry", "expire_recordings", RECORDINGS_LIMIT, RECORDINGS_LIMIT, every,
                o->m.recordings_deleted, report_recordings);
    chore_start(o, &o->rep_compact, "reputation counters", "reputation_compact", COMPACT_LIMIT, COMPACT_LIMIT, every,
                o->m.rep_folded, NULL);
    chore_start(o, &o->webhook_expiry, "webhook retention", "webhook_expire", o->conf->webhook_retention_days,
                WEBHOOK_EXPIRY_LIMIT, every, o->m.webhooks_expired, report_webhooks_expired);
    chore_start(o, &o->expire, "idempotency expiry", "expire_idem", o->conf->idem_keep_s, 0, EXPIRE_EVERY_MS,
                o->m.expired, report_expired);
}

void outcome__reaper_pause(outcome_t *o)
{
    uv_timer_stop(&o->reap.timer);
    uv_timer_stop(&o->compact.timer);
    uv_timer_stop(&o->rep_compact.timer);
    uv_timer_stop(&o->expire.timer);
    uv_timer_stop(&o->recordings.timer);
    uv_timer_stop(&o->webhook_expiry.timer);
}

void outcome__reaper_stop(outcome_t *o)
{
    /* a query still out calls back into o: the pool is closed after this, and
     * od_pg_close answers it (EUNAVAIL) before the memory goes */
    uv_close((uv_handle_t *)&o->reap.timer, NULL);
    uv_close((uv_handle_t *)&o->compact.timer, NULL);
    uv_close((uv_handle_t *)&o->rep_compact.timer, NULL);
    uv_close((uv_handle_t *)&o->expire.timer, NULL);
    uv_close((uv_handle_t *)&o->recordings.timer, NULL);
    uv_close((uv_handle_t *)&o->webhook_expiry.timer, NULL);
}
