/*
 * outdial-outcome: applies call events to PostgreSQL (the source of truth)
 * and ends calls whose dialer died. Private header.
 *
 * Events flow in batches, one in flight at a time so a call's events are
 * applied in the order they were consumed:
 *
 *   on_message ──► open batch ──(next loop turn, or batch_max events)──► flight ──► od_apply_events
 *                                                                          │  ▲        │ OK: every token done
 *                                                  PG unavailable: backoff └──┘        │ SQL error: each event
 *                                                                                      ▼ alone; skip the poison one
 *
 * Files: apply.c (consumer, batches), reaper.c (lease reaper, idempotency
 * expiry, counter folding), webhook_sender.c (webhook deliveries), alerts.c
 * (operator alerts of internal errors), reputation.c (caller reputation:
 * the /metrics gauges and the slow-down check), outcome.c (set-up,
 * readiness, drain).
 */
#ifndef OD_OUTCOME_H
#define OD_OUTCOME_H

#include <stdint.h>
#include <uv.h>

#include "od/kafka.h"
#include "od/metrics.h"
#include "od/pg.h"
#include "od/svc.h"

typedef struct outcome_conf {
    od_common_conf_t common;
    int64_t reaper_interval_ms; /**< OUTDIAL_REAPER_INTERVAL_MS */
    int64_t batch_max;          /**< OUTDIAL_OUTCOME_BATCH */
    int64_t idem_keep_s;        /**< OUTDIAL_IDEMPOTENCY_KEEP_S */
    /* webhook_sender.c */
    int webhook_allow_private;       /**< OUTDIAL_WEBHOOK_ALLOW_PRIVATE */
    int64_t webhook_concurrency;     /**< OUTDIAL_WEBHOOK_CONCURRENCY */
    int64_t webhook_per_endpoint;    /**< OUTDIAL_WEBHOOK_PER_ENDPOINT */
    int64_t webhook_per_project;     /**< OUTDIAL_WEBHOOK_PER_PROJECT */
    int64_t webhook_retention_days;  /**< OUTDIAL_WEBHOOK_RETENTION_DAYS (reaper.c) */
    char *secret_key;                /**< OUTDIAL_SECRET_KEY: opens the endpoints' secrets */
    char *secret_key_prev;           /**< OUTDIAL_SECRET_KEY_PREVIOUS ("": none) */
    int64_t webhook_timeout_ms;      /**< OUTDIAL_WEBHOOK_TIMEOUT_MS */
    int64_t webhook_poll_ms;         /**< OUTDIAL_WEBHOOK_POLL_MS */
    int64_t webhook_disable_after_s; /**< OUTDIAL_WEBHOOK_DISABLE_AFTER_S */
    char *webhook_retry_schedule;    /**< OUTDIAL_WEBHOOK_RETRY_SCHEDULE */
    /* alerts.c */
    char *alert_webhook_url;    /**< OUTDIAL_ALERT_WEBHOOK_URL ("": none) */
    char *alert_webhook_secret; /**< OUTDIAL_ALERT_WEBHOOK_SECRET ("": unsigned) */
    int64_t alert_webhook_retry_s; /**< OUTDIAL_ALERT_WEBHOOK_RETRY_S */
    /* reputation.c, apply.c */
    double rep_short_call_s;  /**< OUTDIAL_REPUTATION_SHORT_CALL_S */
    double rep_threshold;     /**< OUTDIAL_REPUTATION_THRESHOLD */
    int64_t rep_min_answered; /**< OUTDIAL_REPUTATION_MIN_ANSWERED */
    int64_t rep_cooldown_s;   /**< OUTDIAL_REPUTATION_COOLDOWN_S */
    int64_t rep_interval_ms;  /**< OUTDIAL_REPUTATION_INTERVAL_MS */
} outcome_conf_t;

/** One consumed event, as the JSON object od_apply_events takes. */
typedef struct oevent {
    char *json;      /**< {call_id, status, allowed_from, final_state, ...} (heap) */
    od_ktoken_t tok;
    char call_id[37];
    int64_t at_us;
} oevent_t;

typedef struct obatch {
    oevent_t *ev;
    int n, cap;
} obatch_t;

typedef struct outcome outcome_t;
typedef struct wh_sender wh_sender_t;
typedef struct outcome_alerts outcome_alerts_t;
typedef struct outcome_rep outcome_rep_t;

/** A periodic statement of reaper.c: one parameter in, a count out, never twice at once. */
typedef struct outcome_chore {
    outcome_t *o;
    uv_timer_t timer;
    int inflight;
    const char *what, *stmt; /* for logs; the prepared statement */
    int64_t param;           /* its one parameter */
    int limit;               /* a count this high runs it again at once (0: never) */
    uint64_t every_ms;
    od_metric_t *metric;     /* counts what it did */
    void (*report)(outcome_t *o, int n); /* logs a count > 0, or NULL */
} outcome_chore_t;

struct outcome {
    od_svc_t *svc;
    const outcome_conf_t *conf;
    uv_loop_t *loop;
    od_pg_t *pg;
    od_kcons_t *kcons;

    /* apply.c */
    obatch_t open;        /**< events collected during this loop turn */
    obatch_t flight;      /**< the batch being applied (until every event is done or skipped) */
    int inflight;         /**< 1 while the apply query is out */
    int isolate;          /**< 1: flight is applied one event at a time (an SQL error to isolate) */
    int iso_i;            /**< in isolate mode: the event being applied */
    uv_timer_t flush_timer; /**< next-turn flush, or the retry backoff of flight */
    unsigned backoff_ms;
    int paused, draining, closing;

    /* reaper.c */
    outcome_chore_t reap, compact, rep_compact, expire, recordings, webhook_expiry;

    uv_timer_t drain_timer;
    wh_sender_t *webhooks; /**< webhook_sender.c */
    outcome_alerts_t *alerts; /**< alerts.c */
    outcome_rep_t *rep;       /**< reputation.c */

    struct {
        od_metric_t *applied, *ignored, *latency, *batch_size, *poison, *reaped, *expired, *compacted, *rep_folded,
            *recordings_deleted, *webhooks_expired;
    } m;
};

/* outcome.c */
/** Creates the service on svc's loop. NULL on a fatal set-up error. */
outcome_t *outcome_new(od_svc_t *svc, const outcome_conf_t *conf);
/** Finishes a drain once nothing is left to apply. */
void outcome__drain_check(outcome_t *o);
/** Backoff step: 100 ms doubling to 5 s. */
unsigned outcome__backoff(unsigned *ms);

/* apply.c */
void outcome__apply_init(outcome_t *o);
void outcome__on_message(void *arg, const rd_kafka_message_t *msg, od_ktoken_t tok);
/** Sends the open batch if no batch is in flight. */
void outcome__flush(outcome_t *o);
void outcome__apply_close(outcome_t *o);

/* reaper.c */
void outcome__reaper_start(outcome_t *o);
void outcome__reaper_stop(outcome_t *o);
/** Stops the chores' timers (drain); the handles are closed by outcome__reaper_stop. */
void outcome__reaper_pause(outcome_t *o);

/* webhook_sender.c */
/** Starts sending webhook deliveries; NULL on a configuration error. */
wh_sender_t *outcome__webhooks_start(outcome_t *o);
/** Drain: no more claims; what is in flight finishes and is recorded. */
void outcome__webhooks_drain(wh_sender_t *s);
/** 1 while requests are in flight or answers are not recorded yet. */
int outcome__webhooks_busy(const wh_sender_t *s);
void outcome__webhooks_close(wh_sender_t *s);

/* alerts.c */
/** Starts claiming internal-error alerts every reaper interval. */
outcome_alerts_t *outcome__alerts_start(outcome_t *o);
/** Drain: no more claims. */
void outcome__alerts_pause(outcome_alerts_t *a);
/** 1 while a claim, a webhook or the marking is out. */
int outcome__alerts_busy(const outcome_alerts_t *a);
void outcome__alerts_close(outcome_alerts_t *a);

/* reputation.c */
/** Starts the reputation check every OUTDIAL_REPUTATION_INTERVAL_MS. */
outcome_rep_t *outcome__rep_start(outcome_t *o);
/** Drain: no more checks. */
void outcome__rep_pause(outcome_rep_t *r);
/** 1 while a check is out. */
int outcome__rep_busy(const outcome_rep_t *r);
void outcome__rep_close(outcome_rep_t *r);

#endif
