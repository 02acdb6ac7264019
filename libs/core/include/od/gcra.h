/*
 * GCRA (generic cell rate algorithm): the rate limiter behind per-project
 * pacing in the scheduler. The clock is always passed in, so tests inject it.
 *
 * A limit of `limit` events per `period_us` has an emission interval
 * T = period/limit; `burst` events may go at once (burst 1 = strictly
 * spaced). State is one number: the theoretical arrival time (TAT).
 * The same algorithm runs in SQL (od_gcra_step in proto/sql) for the API rate
 * limits that all ingress copies share.
 */
#ifndef OD_GCRA_H
#define OD_GCRA_H

#include <stdint.h>

typedef struct od_gcra {
    int64_t tat_us; /**< theoretical arrival time; 0 = never used */
} od_gcra_t;

typedef struct od_gcra_result {
    int allowed;            /**< 1 if the event may happen now */
    int64_t retry_after_us; /**< when denied: wait this long before it would be allowed */
    int64_t remaining;      /**< events still allowed right now after this one */
    int64_t reset_us;       /**< time until the full burst is available again */
} od_gcra_result_t;

/**
 * Takes one event at `now_us` if the limit allows it (and updates the state),
 * else leaves the state alone. `burst` ≥ 1.
 */
od_gcra_result_t od_gcra_take(od_gcra_t *g, int64_t now_us, int64_t limit, int64_t period_us, int64_t burst);
/** When the next event would be allowed (≤ now_us if already allowed). */
int64_t od_gcra_next_us(const od_gcra_t *g, int64_t now_us, int64_t limit, int64_t period_us, int64_t burst);

#endif
