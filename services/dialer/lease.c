/*
 * Leases. od_claim gives the call a lease; while a call is in flight here a
 * timer renews the leases of all of them every lease/3 (one query). When the
 * final event of a call is in Kafka, its lease is released so the reaper
 * leaves it to the outcome service; releases are batched (one query per
 * 100 ms), and the slot is freed only once PostgreSQL has it. A dialer that
 * dies stops renewing: the reaper ends its calls as internal_error, never
 * redialing them.
 *
 * A dialer that lives but cannot reach PostgreSQL must not go on either: the
 * reaper fails its calls when their leases run out, and the customer retries
 * them. So each call keeps a local deadline, the time its claim or its last
 * successful renewal was *sent* plus the lease (PostgreSQL's lease starts
 * later, so the deadline comes first). A call is dialed only while its
 * deadline is more than LEASE_MARGIN_MS away (dialer__lease_held, asked again
 * by the provider after any wait in a trunk's queue), and a call in progress
 * whose deadline passes, or that a renewal no longer finds ours, is hung up
 * and ends internal_error, as the reaper ends it:
 *
 *   claim sent ──committed──► deadline = sent + lease
 *   renewal sent ──renewed──► deadline = sent + lease
 *                └─not renewed (expired, reaped)──► lost: hang up
 *   the watch (every LEASE_WATCH_MS): deadline passed ──► lost: hang up
 */
#include <stdlib.h>
#include <string.h>

#include "dialer.h"
#include "od/core.h"
#include "od/log.h"

#define RELEASE_EVERY_MS 100
#define RELEASE_MAX 1000   /* ids per release query */
#define LEASE_MARGIN_MS 1000 /* no dial this close to the deadline: time for the INVITE to leave */
#define LEASE_WATCH_MS 250

static int64_t lease_ms(const dialer_t *d)
{
    return (int64_t)d->conf->lease_s * 1000;
}

void dialer__lease_claimed(dcall_t *call)
{
    call->lease_deadline_ms = call->lease_sent_ms + lease_ms(call->d);
}

int dialer__lease_held(dcall_t *call)
{
    return !call->lease_lost && od_mono_ms() + LEASE_MARGIN_MS < call->lease_deadline_ms;
}

/* The call can no longer be proven ours: hang it up (it ends internal_error, dial.c). */
static void lease_lost(dcall_t *call, const char *why)
{
    if (call->lease_lost || call->state != DCALL_ACTIVE)
        return;
    call->lease_lost = 1;
    od_log(OD_LOG_ERROR, call->id, "lease lost (%s): hanging up", why);
    if (call->handle != NULL)
        call->d->provider->ops->hangup(call->handle);
}

static void on_lease_watch(uv_timer_t *t)
{
    dialer_t *d = t->data;
    int64_t now = od_mono_ms();
    for (dcall_t *call = d->calls, *next; call != NULL; call = next) {
        next = call->next; /* a hang-up may end the call now (sip), never free it */
        if (call->state == DCALL_ACTIVE && now >= call->lease_deadline_ms)
            lease_lost(call, "no renewal reached PostgreSQL within the lease");
    }
}

/* ---- renew ---- */

static void on_renewed(void *arg, int status, PGresult *res)
{
    dialer_t *d = arg;
    d->renew_inflight = 0;
    const char *renewed = status == OD_PG_OK && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : NULL;
    if (status != OD_PG_OK)
        od_warn("lease renewal failed: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
    for (dcall_t *call = d->calls, *next; call != NULL; call = next) {
        next = call->next;
        if (!call->renewing)
            continue;
        call->renewing = 0;
        if (renewed == NULL)
            continue; /* the deadline stays; the watch acts on it */
        if (strstr(renewed, call->id) != NULL)
            call->lease_deadline_ms = OD_MAX(call->lease_deadline_ms, d->renew_sent_ms + lease_ms(d));
        else
            lease_lost(call, "the renewal found it no longer ours"); /* ENDED calls: nothing left to do */
    }
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
        call->renewing = 0;
        if (call->state == DCALL_CLAIMING)
            continue;
        call->renewing = 1;
        od_buf_printf(&ids, "%s%s", n++ > 0 ? "," : "", call->id);
    }
    od_buf_puts(&ids, "}");
    if (n > 0) {
        const char *params[3] = {d->dialer_id, ids.base, d->lease_s_text};
        d->renew_sent_ms = od_mono_ms();
        if (od_pg_query(d->pg, "renew", 3, params, on_renewed, d) == 0) {
            d->renew_inflight = 1;
        } else {
            od_warn("lease renewal of %d calls skipped: no postgresql connection", n);
            for (dcall_t *call = d->calls; call != NULL; call = call->next)
                call->renewing = 0;
        }
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
    uv_timer_init(d->loop, &d->lease_watch);
    d->lease_watch.data = d;
    uv_timer_start(&d->lease_watch, on_lease_watch, LEASE_WATCH_MS, LEASE_WATCH_MS);
}

void dialer__lease_close(dialer_t *d)
{
    uv_close((uv_handle_t *)&d->renew_timer, NULL);
    uv_close((uv_handle_t *)&d->release_timer, NULL);
    uv_close((uv_handle_t *)&d->lease_watch, NULL);
    free(d->release);
    d->release = NULL;
}
