/* outdial-scheduler: holds due calls, paces them per project and publishes
 * them to calls.dispatch (DESIGN §3). Private header of the service. */
#ifndef OD_SCHEDULER_H
#define OD_SCHEDULER_H

#include <stdint.h>

#include "od/kafka.h"
#include "od/metrics.h"
#include "od/pg.h"
#include "od/svc.h"
#include "pacing.h"

typedef struct sched_conf {
    od_common_conf_t common;
    int64_t sweep_ms;     /**< OUTDIAL_SCHED_SWEEP_MS */
    int64_t horizon_s;    /**< OUTDIAL_SCHED_HORIZON_S */
    int64_t redispatch_s; /**< OUTDIAL_SCHED_REDISPATCH_S */
    int64_t batch;        /**< OUTDIAL_SCHED_BATCH */
    int64_t sweep_limit;  /**< OUTDIAL_SCHED_SWEEP_LIMIT */
    int64_t clock_offset_s; /**< OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S: tests only, the calling windows' clock */
} sched_conf_t;

typedef struct sched_send sched_send_t;

typedef struct sched {
    od_svc_t *svc;
    const sched_conf_t *conf;
    od_pg_t *pg;
    od_kprod_t *prod;
    od_kcons_t *cons;
    char *topic_req;  /**< topic_prefix + "calls.requested" */
    char *topic_disp; /**< topic_prefix + "calls.dispatch" */
    char *group;      /**< topic_prefix + "scheduler" */
    char redispatch_txt[24], horizon_txt[24], limit_txt[24], clock_offset_txt[24];

    pacing_t *pc;          /**< every call held in memory */
    uv_timer_t wake_timer; /**< the earliest pacing wake-up */
    uv_timer_t sweep_timer;
    uv_timer_t drain_timer; /**< defers the drain's end out of the callback that noticed it */

    /* ownership: partitions of calls.requested assigned to this member */
    uint8_t *owned;   /**< owned[p] = 1 if partition p is assigned */
    int32_t nowned;   /**< length of owned[] */
    int32_t part_cnt; /**< partition count of calls.requested, last known (-1 unknown) */

    /* project cache (sweep.c) */
    char (*projects)[37];      /**< every project id, sorted */
    size_t nprojects;
    int64_t projects_at_ms;    /**< when loaded (monotonic); 0 = never */
    int projects_stale;        /**< reload before the next sweep */
    char **crowded;            /**< projects skipped by the next sweep (the last one hit its limit), sorted */
    size_t ncrowded;
    int sweep_inflight;        /**< a projects or sweep query is in flight */
    int sweep_again;           /**< a sweep was asked for while one was in flight */

    int dispatch_inflight; /**< od_dispatch queries in flight */
    sched_send_t *sends;   /**< send jobs (publishing or waiting to retry), a list */
    int nsends;
    int draining;
    int drained;

    od_metric_t *m_pending, *m_dispatched, *m_lag, *m_dnc, *m_held, *m_recovered, *m_retries;
    od_metric_t *m_window_held, *m_no_window;
} sched_t;

/** Creates the scheduler on svc's loop. Returns NULL on a fatal setup error (logged). */
sched_t *sched_new(od_svc_t *svc, const sched_conf_t *conf);

/* ---- internal, between scheduler.c and sweep.c ---- */

/** Wall clock in ms since the epoch (the clock of due_ms and next_ms). */
int64_t sched__now_ms(void);
/** Reads the partition count of calls.requested again (kept when unknown). */
void sched__part_cnt_refresh(sched_t *s);
/** 1 if project `proj_id` hashes to a partition assigned to this member. */
int sched__owns(sched_t *s, const char *proj_id);
/**
 * Holds a call in memory (pacing_add) with the time zones of its number
 * `phone` (od_phone_time_zones), which od_dispatch needs for the calling
 * windows. Returns 1 if added, 0 if already held.
 */
int sched__add(sched_t *s, const char *proj_id, const char *call_id, const char *batch_id, int64_t due_ms,
               const char *phone);
/** Updates the pending gauge and re-arms the wake timer after the set changed. */
void sched__changed(sched_t *s);
/** Checks whether the drain can end (deferred to a timer). */
void sched__drain_check(sched_t *s);

/** Starts the sweep timer (sweep.c). */
void sched__sweep_start(sched_t *s);
/** Runs a sweep now (or right after the one in flight). */
void sched__sweep_now(sched_t *s);
/** Notes that a message named a project the cache does not know. */
void sched__project_seen(sched_t *s, const char *proj_id);
/** Frees the sweep's memory. */
void sched__sweep_free(sched_t *s);

/** Statements prepared on every connection. */
extern const od_pg_stmt_t sched__stmts[];
extern const size_t sched__nstmts;

#endif
