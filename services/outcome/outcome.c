/*
 * The outcome service as a whole: set-up, readiness and the SIGTERM drain.
 */
#include <stdio.h>
#include <stdlib.h>

#include "od/core.h"
#include "od/log.h"
#include "outcome.h"

static const od_pg_stmt_t outcome_stmts[] = {
    {"apply", "SELECT od_apply_events($1::jsonb)"},
    {"reap", "SELECT od_reap($1::integer)"},
    {"batch_compact", "SELECT od_batch_compact($1::integer)"},
    {"reputation_compact", "SELECT od_reputation_compact($1::integer)"},
    {"reputation_check", "SELECT od_reputation_check($1::double precision, $2::integer, $3::integer)::text"},
    {"expire_idem", "SELECT od_expire_idempotency($1::integer)"},
    {"expire_recordings", "SELECT od_recordings_expire($1::integer)"},
    {"alerts_claim", "SELECT od_alerts_claim($1::integer, $2::integer)"},
    {"alerts_done", "SELECT od_alerts_done($1::uuid[])"},
    {"webhook_cycle", "SELECT od_webhook_cycle($1, $2::jsonb, $3::integer[], $4::integer, $5::integer, "
                      "$6::integer, $7::integer, $8::integer)::text"},
    /* the limit is the chore's (reaper.c, WEBHOOK_EXPIRY_LIMIT) */
    {"webhook_expire", "SELECT od_webhook_expire($1::integer, 1000)"},
};

static const double latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double batch_buckets[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000};

unsigned outcome__backoff(unsigned *ms)
{
    *ms = *ms == 0 ? 100 : OD_MIN(*ms * 2, 5000u);
    return *ms;
}

/* Ready once PostgreSQL has a connection and the consumer exists; an
 * assignment is not required (more copies than partitions leaves spares). */
static int outcome_ready(void *arg, od_buf_t *why)
{
    outcome_t *o = arg;
    if (od_pg_ready(o->pg) == 0) {
        od_buf_puts(why, "postgresql: no connection ready");
        return 0;
    }
    if (o->kcons == NULL) {
        od_buf_puts(why, "kafka: consumer not created");
        return 0;
    }
    return 1;
}

static void on_drain_finish(uv_timer_t *t)
{
    outcome_t *o = t->data;
    od_info("drain: every event applied; committing offsets and leaving the group");
    od_kcons_destroy(o->kcons);
    o->kcons = NULL;
    outcome__reaper_stop(o);
    outcome__apply_close(o);
    outcome__webhooks_close(o->webhooks);
    outcome__alerts_close(o->alerts);
    outcome__rep_close(o->rep);
    od_pg_close(o->pg);
    uv_close((uv_handle_t *)&o->drain_timer, NULL);
    od_svc_done(o->svc, 0);
}

void outcome__drain_check(outcome_t *o)
{
    if (!o->draining || o->closing || o->flight.n > 0 || o->open.n > 0 || o->inflight ||
        outcome__webhooks_busy(o->webhooks) || outcome__alerts_busy(o->alerts) || outcome__rep_busy(o->rep))
        return;
    o->closing = 1;
    uv_timer_start(&o->drain_timer, on_drain_finish, 0, 0);
}

static void outcome_drain(od_svc_t *svc, void *arg)
{
    outcome_t *o = arg;
    (void)svc;
    o->draining = 1;
    if (!o->paused) {
        o->paused = 1;
        od_kcons_pause(o->kcons);
    }
    outcome__reaper_pause(o);
    outcome__webhooks_drain(o->webhooks);
    outcome__alerts_pause(o->alerts);
    outcome__rep_pause(o->rep);
    od_info("drain: %d events in flight, %d collected", o->flight.n, o->open.n);
    outcome__flush(o); /* the events already collected go too */
    outcome__drain_check(o);
}

outcome_t *outcome_new(od_svc_t *svc, const outcome_conf_t *conf)
{
    char err[512];
    outcome_t *o = od_calloc(1, sizeof(*o));
    o->svc = svc;
    o->conf = conf;
    o->loop = svc->loop;

    o->m.applied = od_counter("outdial_outcome_events_applied_total", NULL, "call events that changed a call");
    o->m.ignored = od_counter("outdial_outcome_events_ignored_total", NULL,
                              "call events ignored as late or duplicate (sent - applied)");
    o->m.latency = od_histogram("outdial_outcome_apply_latency_seconds", NULL,
                                "from the event (dialer clock) to its commit in PostgreSQL", latency_buckets,
                                (int)OD_ARRAY_SIZE(latency_buckets));
    o->m.batch_size = od_histogram("outdial_outcome_batch_size", NULL, "events per od_apply_events batch",
                                   batch_buckets, (int)OD_ARRAY_SIZE(batch_buckets));
    o->m.poison = od_counter("outdial_outcome_poison_events_total", NULL, "malformed or unstorable events skipped");
    o->m.reaped = od_counter("outdial_outcome_reaped_total", NULL,
                             "calls ended as internal_error because their dialer's lease ran out");
    o->m.expired = od_counter("outdial_outcome_idempotency_expired_total", NULL, "idempotency records deleted");
    o->m.recordings_deleted = od_counter("outdial_outcome_recordings_deleted_total", NULL,
                                         "recordings deleted after their project's retention period");
    o->m.webhooks_expired = od_counter("outdial_outcome_webhook_deliveries_expired_total", NULL,
                                       "finished webhook deliveries deleted after OUTDIAL_WEBHOOK_RETENTION_DAYS");
    o->m.compacted = od_counter("outdial_outcome_batch_deltas_folded_total", NULL,
                                "batch counter deltas folded into the batches' counters");
    o->m.rep_folded = od_counter("outdial_outcome_reputation_deltas_folded_total", NULL,
                                 "caller reputation deltas folded into its 5-minute buckets");

    o->pg = od_pg_new(o->loop, "outcome", conf->common.pg_dsn, (int)conf->common.pg_conns, outcome_stmts,
                      OD_ARRAY_SIZE(outcome_stmts));
    if ((o->webhooks = outcome__webhooks_start(o)) == NULL)
        return NULL;
    outcome__apply_init(o);
    outcome__reaper_start(o);
    o->alerts = outcome__alerts_start(o);
    o->rep = outcome__rep_start(o);
    uv_timer_init(o->loop, &o->drain_timer);
    o->drain_timer.data = o;

    od_buf_t topic = OD_BUF_INIT, group = OD_BUF_INIT;
    od_buf_printf(&topic, "%scalls.events", conf->common.topic_prefix);
    od_buf_printf(&group, "%soutcome", conf->common.topic_prefix);
    od_kcons_handlers_t handlers = {outcome__on_message, NULL, NULL};
    o->kcons = od_kcons_new(o->loop, conf->common.kafka_brokers, group.base, topic.base, &handlers, o, NULL, err,
                            sizeof(err));
    if (o->kcons == NULL) {
        od_error("kafka consumer: %s", err);
        od_buf_free(&topic);
        od_buf_free(&group);
        return NULL;
    }
    od_info("outcome: %s (group %s) -> postgresql, batches of up to %lld, reaper every %lld ms", topic.base,
            group.base, (long long)conf->batch_max, (long long)conf->reaper_interval_ms);
    od_buf_free(&topic);
    od_buf_free(&group);
    od_svc_set_ready(svc, outcome_ready, o);
    od_svc_on_drain(svc, outcome_drain, o);
    return o;
}
