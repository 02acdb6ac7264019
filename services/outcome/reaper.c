/*
 * The lease reaper: a call whose dialer stopped renewing its lease (crash,
 * partition, drain timeout) ends as internal_error; it is never dialed again
 * (guarantee 1). Every outcome copy runs it: od_reap locks with SKIP LOCKED.
 * Also the chores: folding the batches' counter deltas into their counters
 * and finishing the batches that are done (every reaper interval), and
 * expiring idempotency records past their keep time (every 10 minutes).
 */
#include <stdio.h>
#include <stdlib.h>

#include "od/core.h"
#include "od/log.h"
#include "outcome.h"

#define REAP_LIMIT "1000"
#define EXPIRE_EVERY_MS (10 * 60 * 1000)
#define COMPACT_LIMIT "10000"

static void on_reap_timer(uv_timer_t *t);

static void on_reaped(void *arg, int status, PGresult *res)
{
    outcome_t *o = arg;
    o->reap_inflight = 0;
    if (status != OD_PG_OK) {
        od_warn("reaper: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
        return;
    }
    int n = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
    if (n == 0)
        return;
    od_metric_add(o->m.reaped, n);
    od_warn("reaper: %d calls whose dialer stopped renewing its lease ended as internal_error", n);
    if (n >= atoi(REAP_LIMIT) && !o->draining)
        uv_timer_start(&o->reap_timer, on_reap_timer, 0, (uint64_t)o->conf->reaper_interval_ms); /* more left */
}

static void on_reap_timer(uv_timer_t *t)
{
    outcome_t *o = t->data;
    if (o->reap_inflight)
        return;
    const char *params[1] = {REAP_LIMIT};
    if (od_pg_query(o->pg, "reap", 1, params, on_reaped, o) == 0)
        o->reap_inflight = 1;
}

static void on_compact_timer(uv_timer_t *t);

static void on_compacted(void *arg, int status, PGresult *res)
{
    outcome_t *o = arg;
    o->compact_inflight = 0;
    if (status != OD_PG_OK) {
        od_warn("batch counters: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
        return;
    }
    int n = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
    od_metric_add(o->m.compacted, n);
    if (n >= atoi(COMPACT_LIMIT) && !o->draining)
        uv_timer_start(&o->compact_timer, on_compact_timer, 0, (uint64_t)o->conf->reaper_interval_ms); /* more left */
}

static void on_compact_timer(uv_timer_t *t)
{
    outcome_t *o = t->data;
    if (o->compact_inflight)
        return;
    const char *params[1] = {COMPACT_LIMIT};
    if (od_pg_query(o->pg, "batch_compact", 1, params, on_compacted, o) == 0)
        o->compact_inflight = 1;
}

static void on_expired(void *arg, int status, PGresult *res)
{
    outcome_t *o = arg;
    o->expire_inflight = 0;
    if (status != OD_PG_OK) {
        od_warn("idempotency expiry: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
        return;
    }
    int n = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : 0;
    od_metric_add(o->m.expired, n);
    if (n > 0)
        od_info("idempotency expiry: %d records older than %lld s deleted", n, (long long)o->conf->idem_keep_s);
}

static void on_expire_timer(uv_timer_t *t)
{
    outcome_t *o = t->data;
    if (o->expire_inflight)
        return;
    char keep[24];
    snprintf(keep, sizeof(keep), "%lld", (long long)o->conf->idem_keep_s);
    const char *params[1] = {keep};
    if (od_pg_query(o->pg, "expire_idem", 1, params, on_expired, o) == 0)
        o->expire_inflight = 1;
}

void outcome__reaper_start(outcome_t *o)
{
    uint64_t every = (uint64_t)o->conf->reaper_interval_ms;
    uv_timer_init(o->loop, &o->reap_timer);
    o->reap_timer.data = o;
    uv_timer_start(&o->reap_timer, on_reap_timer, every, every);
    uv_timer_init(o->loop, &o->compact_timer);
    o->compact_timer.data = o;
    uv_timer_start(&o->compact_timer, on_compact_timer, every, every);
    uv_timer_init(o->loop, &o->expire_timer);
    o->expire_timer.data = o;
    uv_timer_start(&o->expire_timer, on_expire_timer, EXPIRE_EVERY_MS, EXPIRE_EVERY_MS);
}

void outcome__reaper_stop(outcome_t *o)
{
    /* a query still out calls back into o: the pool is closed after this, and
     * od_pg_close answers it (EUNAVAIL) before the memory goes */
    uv_close((uv_handle_t *)&o->reap_timer, NULL);
    uv_close((uv_handle_t *)&o->expire_timer, NULL);
    uv_close((uv_handle_t *)&o->compact_timer, NULL);
}
