/*
 * Leases. od_claim gives the call a lease; while a call is in flight here a
 * timer renews the leases of all of them every lease/3 (one query). When the
 * final event of a call is in Kafka, its lease is released so the reaper
 * leaves it to the outcome service; releases are batched (one query per
 * 100 ms), and the slot is freed only once PostgreSQL has it. A dialer that
 * dies stops renewing: the reaper ends its calls as internal_error, never
 * redialing them.
 */
#include <stdlib.h>
#include <string.h>

#include "dialer.h"
#include "od/core.h"
#include "od/log.h"

#define RELEASE_EVERY_MS 100
#define RELEASE_MAX 1000 /* ids per release query */

/* ---- renew ---- */

static void on_renewed(void *arg, int status, PGresult *res)
{
    dialer_t *d = arg;
    d->renew_inflight = 0;
    if (status == OD_PG_OK)
        od_debug("leases renewed: %s", PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "?");
    else
        od_warn("lease renewal failed: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
}

static void on_renew_timer(uv_timer_t *t)
{
    dialer_t *d = t->data;
    if (d->renew_inflight)
        return;
    od_buf_t ids = OD_BUF_INIT;
    int n = 0;
    od_buf_puts(&ids, "{");
    for (dcall_t *call = d->calls; call != NULL; call = call->next) {
        if (call->state == DCALL_CLAIMING)
            continue;
        od_buf_printf(&ids, "%s%s", n++ > 0 ? "," : "", call->id);
    }
    od_buf_puts(&ids, "}");
    if (n > 0) {
        const char *params[3] = {d->dialer_id, ids.base, d->lease_s_text};
        if (od_pg_query(d->pg, "renew", 3, params, on_renewed, d) == 0)
            d->renew_inflight = 1;
        else
            od_warn("lease renewal of %d calls skipped: no postgresql connection", n);
    }
    od_buf_free(&ids);
}

/* ---- release ---- */

static void release_flush(dialer_t *d);

static void on_release_timer(uv_timer_t *t)
{
    release_flush(t->data);
}

static void release_retry(dialer_t *d, const char *why)
{
    d->nreleasing = 0;
    unsigned ms = dialer__backoff(&d->release_backoff_ms);
    od_warn("lease release of %d calls failed (%s): retrying in %u ms", d->nrelease, why, ms);
    uv_timer_start(&d->release_timer, on_release_timer, ms, 0);
}

static void on_released(void *arg, int status, PGresult *res)
{
    dialer_t *d = arg;
    if (status != OD_PG_OK) {
        release_retry(d, status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
        return;
    }
    d->release_backoff_ms = 0;
    int n = d->nreleasing;
    dcall_t **done = od_malloc(sizeof(*done) * (size_t)n);
    memcpy(done, d->release, sizeof(*done) * (size_t)n);
    memmove(d->release, d->release + n, sizeof(*done) * (size_t)(d->nrelease - n));
    d->nrelease -= n;
    d->nreleasing = 0;
    if (d->nrelease > 0)
        uv_timer_start(&d->release_timer, on_release_timer, RELEASE_EVERY_MS, 0);
    /* freeing the last slot may finish a drain: do it after the queue is consistent */
    for (int i = 0; i < n; i++) {
        od_log(OD_LOG_DEBUG, done[i]->id, "lease released");
        dialer__call_free(done[i]);
    }
    free(done);
}

static void release_flush(dialer_t *d)
{
    if (d->nreleasing > 0 || d->nrelease == 0)
        return;
    int n = OD_MIN(d->nrelease, RELEASE_MAX);
    od_buf_t ids = OD_BUF_INIT;
    od_buf_puts(&ids, "{");
    for (int i = 0; i < n; i++)
        od_buf_printf(&ids, "%s%s", i > 0 ? "," : "", d->release[i]->id);
    od_buf_puts(&ids, "}");
    const char *params[2] = {d->dialer_id, ids.base};
    d->nreleasing = n;
    if (od_pg_query(d->pg, "release", 2, params, on_released, d) != 0)
        release_retry(d, "no postgresql connection");
    od_buf_free(&ids);
}

void dialer__lease_release(dcall_t *call)
{
    dialer_t *d = call->d;
    call->state = DCALL_RELEASING;
    if (d->nrelease == d->caprelease) {
        d->caprelease = d->caprelease == 0 ? 64 : d->caprelease * 2;
        d->release = od_realloc(d->release, sizeof(*d->release) * (size_t)d->caprelease);
    }
    d->release[d->nrelease++] = call;
    if (d->nreleasing == 0 && !uv_is_active((uv_handle_t *)&d->release_timer))
        uv_timer_start(&d->release_timer, on_release_timer, RELEASE_EVERY_MS, 0);
}

void dialer__lease_init(dialer_t *d)
{
    uint64_t every = (uint64_t)d->conf->lease_s * 1000 / 3;
    uv_timer_init(d->loop, &d->renew_timer);
    d->renew_timer.data = d;
    uv_timer_start(&d->renew_timer, on_renew_timer, every, every);
    uv_timer_init(d->loop, &d->release_timer);
    d->release_timer.data = d;
}

void dialer__lease_close(dialer_t *d)
{
    uv_close((uv_handle_t *)&d->renew_timer, NULL);
    uv_close((uv_handle_t *)&d->release_timer, NULL);
    free(d->release);
    d->release = NULL;
}
