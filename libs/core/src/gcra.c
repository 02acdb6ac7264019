#include "od/gcra.h"

#include <assert.h>

/*
 * With emission interval T = period/limit and tolerance tau = (burst-1)*T,
 * an event at `now` is allowed when now >= TAT - tau; it then moves the TAT
 * to max(TAT, now) + T. Remaining burst = (now + tau - TAT') / T.
 */
od_gcra_result_t od_gcra_take(od_gcra_t *g, int64_t now_us, int64_t limit, int64_t period_us, int64_t burst)
{
    assert(limit > 0 && period_us > 0 && burst >= 1);
    int64_t t = period_us / limit;
    if (t <= 0)
        t = 1;
    int64_t tau = (burst - 1) * t;
    int64_t tat = g->tat_us > now_us ? g->tat_us : now_us;
    od_gcra_result_t r = {0, 0, 0, 0};
    if (now_us < tat - tau) {
        r.retry_after_us = tat - tau - now_us;
        r.remaining = 0;
        r.reset_us = tat - now_us;
        return r;
    }
    g->tat_us = tat + t;
    r.allowed = 1;
    int64_t slack = now_us + tau - g->tat_us; /* >= -t here */
    r.remaining = slack < 0 ? 0 : slack / t + 1;
    r.reset_us = g->tat_us - now_us;
    return r;
}

int64_t od_gcra_next_us(const od_gcra_t *g, int64_t now_us, int64_t limit, int64_t period_us, int64_t burst)
{
    int64_t t = period_us / limit;
    if (t <= 0)
        t = 1;
    int64_t at = g->tat_us - (burst - 1) * t;
    return at > now_us ? at : now_us;
}
