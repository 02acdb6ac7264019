/*
 * The scheduler's wiring: calls.requested in, od_dispatch in PostgreSQL,
 * calls.dispatch out; the wake timer, rebalances and the drain.
 *
 * A call held in memory moves like this (pacing.h has the states):
 *
 *   calls.requested / sweep
 *        |  pacing_add
 *        v
 *     QUEUED --(due, pacing allows: one od_dispatch per project)--> TAKEN
 *        ^                                                            |
 *        +---- "wait", "hold", PostgreSQL unavailable -----------------+
 *                                                                     | "ok"
 *        forgotten <-- "gone", "dnc_blocked" ----- TAKEN              v
 *        forgotten <-- "later", "no_window" ---/                      |
 *        forgotten <-- delivery report OK ------------------------ SENDING
 *                                                  (failed report: publish again
 *                                                   after a backoff, never a
 *                                                   second od_dispatch)
 *
 * Calling windows (quiet hours, docs/quiet-hours.md): each call carries its
 * number's time zones (od_phone_time_zones, looked up once when it is
 * added); od_dispatch applies the windows. A call outside them answers
 * "later": PostgreSQL moved its due_at to the opening, so it is forgotten
 * here and the sweep brings it back when that comes within the horizon.
 *
 * od_dispatch commits calls.dispatched_at before the message is published; a
 * message that never makes it (crash, drain timeout) is found again by the
 * sweep once OUTDIAL_SCHED_REDISPATCH_S has passed, and the dialer's claim
 * (queued -> dialing, compare-and-set) makes a duplicate harmless.
 *
 * Revoke: the projects of revoked partitions and their queued calls are
 * dropped (the new owner reloads them from PostgreSQL). Work already in
 * flight is finished: an od_dispatch answer still has its "ok" calls
 * published, because they are committed as dispatched and the new owner
 * cannot dispatch them (its od_dispatch answers "gone") until the redispatch
 * timeout, 2 minutes late; the dialer's claim keeps this safe even if the
 * new owner also published them. The "wait" calls of a dropped project are
 * forgotten.
 */
#include "scheduler.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/log.h"
#include "od/phone.h"

#define HOLD_RETRY_MS 5000     /* a project whose wallet is empty is asked again after this */
#define WAIT_MIN_MS 100        /* all offered calls waited: look again no sooner (clock skew guard) */
#define WAKE_MAX_MS 60000      /* re-read the wall clock at least this often */
#define PUBLISH_RETRY_MS 200   /* first backoff of a failed publish, doubled up to PUBLISH_RETRY_MAX_MS */
#define PUBLISH_RETRY_MAX_MS 30000
#define PG_RETRY_MS 500        /* first backoff of a failed od_dispatch, doubled up to PG_RETRY_MAX_MS */
#define PG_RETRY_MAX_MS 10000
#define PRODUCER_FLUSH_MS 5000 /* drain: wait this long at most for the last delivery reports */

/** One od_dispatch query in flight for one project. */
typedef struct dispatch_job {
    sched_t *s;
    pacing_proj_t *proj;    /* busy until pacing_release */
    size_t n;
    pacing_call_t *calls[]; /* TAKEN; NULL once answered */
} dispatch_job_t;

/** Publishing one dispatched call, retried until Kafka has it. */
struct sched_send {
    sched_t *s;
    pacing_call_t *call; /* SENDING */
    char *msg;
    size_t len;
    int attempt;
    int waiting; /* 1 while the backoff timer runs */
    uv_timer_t timer;
    sched_send_t *prev, *next; /* s->sends */
};

int64_t sched__now_ms(void)
{
    return od_now_us() / 1000;
}

static int64_t backoff_ms(int base, int max, int attempt)
{
    int64_t d = base;
    for (int i = 1; i < attempt && d < max; i++)
        d *= 2;
    return OD_MIN(d, max);
}

int sched__add(sched_t *s, const char *proj_id, const char *call_id, const char *batch_id, int64_t due_ms,
               const char *phone)
{
    if (!pacing_add(s->pc, proj_id, call_id, batch_id, due_ms))
        return 0;
    const char *zones;
    if (od_phone_time_zones(phone, &zones) < 0) /* stored numbers parse: only a bug gets here */
        od_log(OD_LOG_WARN, call_id, "no time zone for the number: calling windows apply in UTC");
    pacing_find(s->pc, call_id)->zones = zones;
    return 1;
}

/* ---- wake-ups ---- */

static void dispatch_start(sched_t *s, pacing_proj_t *proj, int64_t now);

static void on_wake(uv_timer_t *t)
{
    sched_t *s = t->data;
    if (s->draining)
        return;
    int64_t now = sched__now_ms();
    pacing_proj_t *proj;
    while ((proj = pacing_next_ready(s->pc, now)) != NULL)
        dispatch_start(s, proj, now);
    sched__changed(s);
}

void sched__changed(sched_t *s)
{
    od_metric_set(s->m_pending, (double)pacing_count(s->pc));
    int64_t wake = pacing_next_wake(s->pc);
    if (s->draining || s->drained || wake == INT64_MAX) {
        uv_timer_stop(&s->wake_timer);
        return;
    }
    int64_t delay = wake - sched__now_ms();
    delay = delay < 0 ? 0 : OD_MIN(delay, WAKE_MAX_MS);
    uv_timer_start(&s->wake_timer, on_wake, (uint64_t)delay, 0);
}

/* ---- publishing ---- */

static void send_try(sched_send_t *job);

static void on_send_closed(uv_handle_t *h)
{
    sched_send_t *job = h->data;
    free(job->msg);
    free(job);
}

static void send_end(sched_send_t *job)
{
    sched_t *s = job->s;
    pacing_forget(s->pc, job->call);
    if (job->prev != NULL)
        job->prev->next = job->next;
    else
        s->sends = job->next;
    if (job->next != NULL)
        job->next->prev = job->prev;
    s->nsends--;
    uv_close((uv_handle_t *)&job->timer, on_send_closed);
    sched__changed(s);
    if (s->draining)
        sched__drain_check(s);
}

static void on_send_timer(uv_timer_t *t)
{
    send_try(t->data);
}

static void send_retry(sched_send_t *job, const char *why)
{
    sched_t *s = job->s;
    if (s->draining && job->attempt > 0) {
        /* already committed as dispatched: the sweep of whoever owns the project then
         * finds it again after OUTDIAL_SCHED_REDISPATCH_S */
        od_log(OD_LOG_WARN, job->call->id, "not published before exit (%s); it is dispatched again after %lld s", why,
               (long long)s->conf->redispatch_s);
        send_end(job);
        return;
    }
    job->attempt++;
    int64_t delay = backoff_ms(PUBLISH_RETRY_MS, PUBLISH_RETRY_MAX_MS, job->attempt);
    od_log(OD_LOG_WARN, job->call->id, "publishing to %s failed (%s); retry %d in %lld ms", s->topic_disp, why,
           job->attempt, (long long)delay);
    od_metric_add(s->m_retries, 1);
    job->waiting = 1;
    uv_timer_start(&job->timer, on_send_timer, (uint64_t)delay, 0);
}

static void on_delivery(void *arg, rd_kafka_resp_err_t err)
{
    sched_send_t *job = arg;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        send_retry(job, rd_kafka_err2str(err));
        return;
    }
    od_metric_add(job->s->m_dispatched, 1);
    od_log(OD_LOG_DEBUG, job->call->id, "dispatched");
    send_end(job);
}

static void send_try(sched_send_t *job)
{
    job->waiting = 0;
    int rc = od_kprod_send(job->s->prod, job->s->topic_disp, job->call->id, strlen(job->call->id), job->msg, job->len,
                           on_delivery, job);
    if (rc != 0)
        send_retry(job, rd_kafka_err2str((rd_kafka_resp_err_t)rc));
}

/* takes a copy of `msg`; the call is SENDING and belongs to the job until it ends */
static void send_start(sched_t *s, pacing_call_t *call, const char *msg, size_t len)
{
    sched_send_t *job = od_calloc(1, sizeof(*job));
    job->s = s;
    job->call = call;
    job->msg = od_strndup(msg, len);
    job->len = len;
    uv_timer_init(s->svc->loop, &job->timer);
    job->timer.data = job;
    job->next = s->sends;
    if (s->sends != NULL)
        s->sends->prev = job;
    s->sends = job;
    s->nsends++;
    send_try(job);
}

/* ---- od_dispatch ---- */

/* everything offered goes back; the project is looked at again after a backoff */
static void dispatch_fail(dispatch_job_t *job, const char *why)
{
    sched_t *s = job->s;
    pacing_proj_t *proj = job->proj;
    for (size_t i = 0; i < job->n; i++)
        if (job->calls[i] != NULL)
            pacing_put_back(s->pc, job->calls[i]);
    proj->errors++;
    int64_t delay = backoff_ms(PG_RETRY_MS, PG_RETRY_MAX_MS, proj->errors);
    od_warn("od_dispatch for project %s failed (%s); retry in %lld ms", proj->id, why, (long long)delay);
    pacing_release(s->pc, proj, sched__now_ms() + delay);
}

static pacing_call_t *job_claim(dispatch_job_t *job, size_t hint, const char *id)
{
    if (hint < job->n && job->calls[hint] != NULL && strcmp(job->calls[hint]->id, id) == 0) {
        pacing_call_t *call = job->calls[hint];
        job->calls[hint] = NULL;
        return call;
    }
    for (size_t i = 0; i < job->n; i++) {
        if (job->calls[i] != NULL && strcmp(job->calls[i]->id, id) == 0) {
            pacing_call_t *call = job->calls[i];
            job->calls[i] = NULL;
            return call;
        }
    }
    return NULL;
}

/* applies an "ok" answer; returns the project's next dispatch time */
static int64_t dispatch_apply(sched_t *s, dispatch_job_t *job, json_t *ans, int64_t now)
{
    json_t *calls = json_object_get(ans, "calls");
    json_t *next = json_object_get(ans, "next_ms");
    /* next_ms is the pacing TAT floored to the millisecond: +1 so that we never ask just before it */
    int64_t next_ms = json_is_integer(next) ? json_integer_value(next) + 1 : now;
    int moved = 0; /* calls that left the queue (ok, gone, dnc_blocked) */
    size_t i;
    json_t *el;
    json_array_foreach(calls, i, el) {
        const char *id = json_string_value(json_object_get(el, "id"));
        const char *r = json_string_value(json_object_get(el, "r"));
        pacing_call_t *call = id != NULL ? job_claim(job, i, id) : NULL;
        if (call == NULL || r == NULL) {
            od_warn("od_dispatch answered for a call not asked about (%s)", id != NULL ? id : "?");
            continue;
        }
        if (strcmp(r, "ok") == 0) {
            json_t *msg = json_object_get(el, "msg");
            if (!json_is_string(msg)) {
                od_log(OD_LOG_ERROR, call->id, "od_dispatch gave no message; dispatched again after %lld s",
                       (long long)s->conf->redispatch_s);
                pacing_forget(s->pc, call);
                moved++;
                continue;
            }
            od_metric_observe(s->m_lag, (double)(now - call->due_ms) / 1000.0);
            pacing_sending(s->pc, call);
            send_start(s, call, json_string_value(msg), json_string_length(msg));
            moved++;
        } else if (strcmp(r, "wait") == 0) {
            pacing_put_back(s->pc, call);
        } else if (strcmp(r, "later") == 0) {
            json_t *due = json_object_get(el, "due_ms");
            od_log(OD_LOG_INFO, call->id, "outside its calling window (time zones %s): held %lld s, until it opens",
                   call->zones[0] != '\0' ? call->zones : "unknown",
                   json_is_integer(due) ? (long long)((json_integer_value(due) - now) / 1000) : -1LL);
            od_metric_add(s->m_window_held, 1);
            pacing_forget(s->pc, call); /* its due_at moved: the sweep brings it back */
            moved++;
        } else if (strcmp(r, "no_window") == 0) {
            od_log(OD_LOG_WARN, call->id, "canceled: its calling windows never open within 15 days in %s",
                   call->zones[0] != '\0' ? call->zones : "UTC (no time zone known)");
            od_metric_add(s->m_no_window, 1);
            pacing_forget(s->pc, call);
            moved++;
        } else if (strcmp(r, "dnc_blocked") == 0) {
            od_log(OD_LOG_INFO, call->id, "not dispatched: the number is on the project's do-not-call list");
            od_metric_add(s->m_dnc, 1);
            pacing_forget(s->pc, call);
            moved++;
        } else { /* "gone": canceled, claimed, dispatched by someone else meanwhile */
            od_log(OD_LOG_DEBUG, call->id, "od_dispatch: %s", r);
            pacing_forget(s->pc, call);
            moved++;
        }
    }
    for (i = 0; i < job->n; i++) /* not in the answer: keep them */
        if (job->calls[i] != NULL) {
            pacing_put_back(s->pc, job->calls[i]);
            job->calls[i] = NULL;
        }
    if (moved == 0 && next_ms < now + WAIT_MIN_MS)
        next_ms = now + WAIT_MIN_MS; /* our clock ahead of the database's: don't spin */
    return next_ms;
}

static void on_dispatch(void *arg, int status, PGresult *res)
{
    dispatch_job_t *job = arg;
    sched_t *s = job->s;
    pacing_proj_t *proj = job->proj;
    s->dispatch_inflight--;
    if (status != OD_PG_OK) {
        /* EUNAVAIL: it may have committed; then the calls answer "gone" next time and
         * come back through the sweep after the redispatch timeout */
        dispatch_fail(job, status == OD_PG_EQUERY ? od_pg_errmsg(res) : "connection lost");
        goto out;
    }
    json_error_t jerr;
    json_t *ans = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, &jerr) : NULL;
    const char *r = json_string_value(json_object_get(ans, "r"));
    int64_t now = sched__now_ms();
    if (r == NULL) {
        dispatch_fail(job, "unreadable answer");
    } else if (strcmp(r, "hold") == 0) {
        od_metric_add(s->m_held, 1);
        od_debug("project %s held: its wallet is empty", proj->id);
        for (size_t i = 0; i < job->n; i++)
            pacing_put_back(s->pc, job->calls[i]);
        proj->errors = 0;
        pacing_release(s->pc, proj, now + HOLD_RETRY_MS);
    } else if (strcmp(r, "gone") == 0) {
        od_warn("project %s no longer exists: dropping its %zu calls", proj->id, proj->ncalls);
        for (size_t i = 0; i < job->n; i++)
            pacing_forget(s->pc, job->calls[i]);
        if (!proj->dropped)
            pacing_drop(s->pc, proj);
        pacing_release(s->pc, proj, 0);
    } else {
        int64_t next_ms = dispatch_apply(s, job, ans, now);
        proj->errors = 0;
        pacing_release(s->pc, proj, next_ms);
    }
    json_decref(ans);
out:
    free(job);
    sched__changed(s);
    if (s->draining)
        sched__drain_check(s);
}

static void dispatch_start(sched_t *s, pacing_proj_t *proj, int64_t now)
{
    dispatch_job_t *job = od_malloc(sizeof(*job) + (size_t)s->conf->batch * sizeof(pacing_call_t *));
    job->s = s;
    job->proj = proj;
    job->n = pacing_take(s->pc, proj, now, (size_t)s->conf->batch, job->calls);
    if (job->n == 0) {
        pacing_release(s->pc, proj, proj->not_before_ms);
        free(job);
        return;
    }
    /* the ids and, in the same order, their zones ("Zone,Zone": quoted; names have no '"' or '\\') */
    od_buf_t ids = OD_BUF_INIT, zones = OD_BUF_INIT;
    od_buf_puts(&ids, "{");
    od_buf_puts(&zones, "{");
    for (size_t i = 0; i < job->n; i++) {
        od_buf_printf(&ids, "%s%s", i > 0 ? "," : "", job->calls[i]->id);
        od_buf_printf(&zones, "%s\"%s\"", i > 0 ? "," : "", job->calls[i]->zones ? job->calls[i]->zones : "");
    }
    od_buf_puts(&ids, "}");
    od_buf_puts(&zones, "}");
    const char *vals[5] = {proj->id, ids.base, s->redispatch_txt, zones.base, s->clock_offset_txt};
    if (od_pg_query(s->pg, "sched_dispatch", 5, vals, on_dispatch, job) == 0)
        s->dispatch_inflight++;
    else {
        dispatch_fail(job, "PostgreSQL not connected");
        free(job);
    }
    od_buf_free(&ids);
    od_buf_free(&zones);
}

/* ---- calls.requested ---- */

static void on_message(void *arg, const rd_kafka_message_t *msg, od_ktoken_t tok)
{
    sched_t *s = arg;
    json_error_t jerr;
    json_t *m = json_loadb(msg->payload, msg->len, 0, &jerr);
    const char *call_id = json_string_value(json_object_get(m, "call_id"));
    const char *proj_id = json_string_value(json_object_get(m, "project_id"));
    json_t *batch = json_object_get(m, "batch_id");
    json_t *due = json_object_get(m, "due_ms");
    const char *phone = json_string_value(json_object_get(m, "phone"));
    const char *type = json_string_value(json_object_get(m, "type"));
    if (type != NULL && strcmp(type, "batch.created") == 0 && proj_id != NULL &&
        od_uuid_check(proj_id, strlen(proj_id)) == 0) {
        /* a batch's calls are in PostgreSQL (one message per batch, not per row): sweep them in now */
        sched__project_seen(s, proj_id);
        sched__sweep_now(s);
    } else if (type == NULL || strcmp(type, "call.requested") != 0 || call_id == NULL ||
        od_uuid_check(call_id, strlen(call_id)) != 0 || proj_id == NULL ||
        od_uuid_check(proj_id, strlen(proj_id)) != 0 || !json_is_integer(due) ||
        (batch != NULL && !json_is_null(batch) &&
         (!json_is_string(batch) || od_uuid_check(json_string_value(batch), json_string_length(batch)) != 0))) {
        od_warn("dropping a malformed message at %s [%d] offset %lld", s->topic_req, (int)msg->partition,
                (long long)msg->offset);
    } else {
        int64_t due_ms = json_integer_value(due);
        sched__project_seen(s, proj_id);
        if (phone == NULL) {
            /* from an ingress older than calling windows: the sweep loads it with its phone */
            od_log(OD_LOG_DEBUG, call_id, "no phone in the message: left to the sweep");
        } else if (due_ms <= sched__now_ms() + s->conf->horizon_s * 1000) {
            if (sched__add(s, proj_id, call_id, json_string_value(batch), due_ms, phone)) {
                od_log(OD_LOG_DEBUG, call_id, "queued in memory");
                sched__changed(s);
            }
        } else {
            od_log(OD_LOG_DEBUG, call_id, "due beyond the horizon: left to the sweep");
        }
    }
    json_decref(m);
    /* the call is durable in PostgreSQL already: the sweep, not this offset, recovers it */
    od_kcons_done(s->cons, tok);
}

static void on_assign(void *arg, const rd_kafka_topic_partition_list_t *parts)
{
    sched_t *s = arg;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (strcmp(tp->topic, s->topic_req) != 0 || tp->partition < 0)
            continue;
        if (tp->partition >= s->nowned) {
            int32_t n = tp->partition + 1;
            s->owned = od_realloc(s->owned, (size_t)n);
            memset(s->owned + s->nowned, 0, (size_t)(n - s->nowned));
            s->nowned = n;
        }
        s->owned[tp->partition] = 1;
    }
    sched__part_cnt_refresh(s);
    od_info("assigned %d partitions of %s (%d in the topic)", parts->cnt, s->topic_req, (int)s->part_cnt);
    sched__sweep_now(s); /* load the pending calls of the new partitions at once */
}

static int not_owned(void *arg, const char *proj_id)
{
    return !sched__owns(arg, proj_id);
}

static void on_revoke(void *arg, const rd_kafka_topic_partition_list_t *parts)
{
    sched_t *s = arg;
    for (int i = 0; i < parts->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (strcmp(tp->topic, s->topic_req) == 0 && tp->partition >= 0 && tp->partition < s->nowned)
            s->owned[tp->partition] = 0;
    }
    /* with the partition count unknown, not_owned() drops everything: safe, the sweep reloads */
    size_t n = pacing_drop_if(s->pc, not_owned, s);
    od_info("revoked %d partitions of %s: dropped %zu projects from memory", parts->cnt, s->topic_req, n);
    sched__changed(s);
}

/* ---- readiness and drain ---- */

static int ready(void *arg, od_buf_t *why)
{
    sched_t *s = arg;
    if (s->pg == NULL || od_pg_ready(s->pg) == 0) {
        od_buf_puts(why, "PostgreSQL not connected");
        return 0;
    }
    if (s->cons == NULL) {
        od_buf_puts(why, "Kafka consumer not running");
        return 0;
    }
    return 1;
}

static void on_drain_check(uv_timer_t *t)
{
    sched_t *s = t->data;
    if (s->drained || s->dispatch_inflight > 0 || s->sweep_inflight || s->nsends > 0)
        return; /* checked again when the next of them ends */
    s->drained = 1;
    od_info("drained: closing the consumer (commits its offsets), the producer and PostgreSQL");
    od_kcons_destroy(s->cons);
    s->cons = NULL;
    od_kprod_destroy(s->prod, PRODUCER_FLUSH_MS);
    s->prod = NULL;
    od_pg_close(s->pg);
    s->pg = NULL;
    uv_close((uv_handle_t *)&s->wake_timer, NULL);
    uv_close((uv_handle_t *)&s->sweep_timer, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    od_svc_done(s->svc, 0);
}

void sched__drain_check(sched_t *s)
{
    if (s->draining && !s->drained)
        uv_timer_start(&s->drain_timer, on_drain_check, 0, 0);
}

static void on_drain(od_svc_t *svc, void *arg)
{
    (void)svc;
    sched_t *s = arg;
    s->draining = 1;
    od_info("draining: %d od_dispatch queries and %d publishes in flight, %zu calls held (left to PostgreSQL)",
            s->dispatch_inflight, s->nsends, pacing_count(s->pc));
    od_kcons_pause(s->cons);
    uv_timer_stop(&s->wake_timer);
    uv_timer_stop(&s->sweep_timer);
    for (sched_send_t *job = s->sends, *next; job != NULL; job = next) {
        next = job->next;
        if (job->waiting) { /* one last try now rather than after the backoff */
            uv_timer_stop(&job->timer);
            send_try(job);
        }
    }
    sched__drain_check(s);
}

/* ---- setup ---- */

static char *concat(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = od_malloc(la + lb + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

static const double lag_buckets[] = {0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800};

sched_t *sched_new(od_svc_t *svc, const sched_conf_t *conf)
{
    char err[512];
    sched_t *s = od_calloc(1, sizeof(*s));
    s->svc = svc;
    s->conf = conf;
    s->part_cnt = -1;
    s->topic_req = concat(conf->common.topic_prefix, "calls.requested");
    s->topic_disp = concat(conf->common.topic_prefix, "calls.dispatch");
    s->group = concat(conf->common.topic_prefix, "scheduler");
    snprintf(s->redispatch_txt, sizeof(s->redispatch_txt), "%lld", (long long)conf->redispatch_s);
    snprintf(s->horizon_txt, sizeof(s->horizon_txt), "%lld", (long long)conf->horizon_s);
    snprintf(s->limit_txt, sizeof(s->limit_txt), "%lld", (long long)conf->sweep_limit);
    snprintf(s->clock_offset_txt, sizeof(s->clock_offset_txt), "%lld", (long long)conf->clock_offset_s * 1000);
    s->pc = pacing_new();

    s->m_pending = od_gauge("outdial_scheduler_pending_calls", NULL, "calls held in memory, not yet published");
    s->m_dispatched = od_counter("outdial_scheduler_dispatched_total", NULL, "calls published to calls.dispatch");
    s->m_lag = od_histogram("outdial_scheduler_due_lag_seconds", NULL,
                            "time from a call's due time to its dispatch (pacing included)", lag_buckets,
                            (int)OD_ARRAY_SIZE(lag_buckets));
    s->m_dnc = od_counter("outdial_scheduler_dnc_blocked_total", NULL, "calls canceled at dispatch by the DNC list");
    s->m_held = od_counter("outdial_scheduler_held_total", NULL,
                           "dispatch attempts held back because the project's wallet is empty");
    s->m_recovered = od_counter("outdial_scheduler_recovered_unpublished_total", NULL,
                                "calls stored but never published to calls.requested, found by the sweep");
    s->m_window_held = od_counter("outdial_scheduler_window_held_total", NULL,
                                  "dispatches held back because the call was outside its calling window");
    s->m_no_window = od_counter("outdial_scheduler_no_window_total", NULL,
                                "calls canceled because their calling windows never open for the number's zones");
    s->m_retries = od_counter("outdial_scheduler_publish_retries_total", NULL,
                              "publishes to calls.dispatch retried after a failed delivery");

    s->pg = od_pg_new(svc->loop, "scheduler", conf->common.pg_dsn, (int)conf->common.pg_conns, sched__stmts,
                      sched__nstmts);
    s->prod = od_kprod_new(svc->loop, conf->common.kafka_brokers, "outdial-scheduler", NULL, err, sizeof(err));
    if (s->prod == NULL) {
        od_error("Kafka producer: %s", err);
        return NULL;
    }
    static const od_kcons_handlers_t handlers = {on_message, on_assign, on_revoke};
    s->cons = od_kcons_new(svc->loop, conf->common.kafka_brokers, s->group, s->topic_req, &handlers, s, NULL, err,
                           sizeof(err));
    if (s->cons == NULL) {
        od_error("Kafka consumer: %s", err);
        return NULL;
    }
    uv_timer_init(svc->loop, &s->wake_timer);
    s->wake_timer.data = s;
    uv_timer_init(svc->loop, &s->drain_timer);
    s->drain_timer.data = s;
    sched__sweep_start(s);
    od_svc_set_ready(svc, ready, s);
    od_svc_on_drain(svc, on_drain, s);
    od_info("consuming %s (group %s), dispatching to %s; horizon %lld s, redispatch after %lld s", s->topic_req,
            s->group, s->topic_disp, (long long)conf->horizon_s, (long long)conf->redispatch_s);
    if (conf->clock_offset_s != 0)
        od_warn("OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S=%lld: calling windows are read on a shifted clock (tests only)",
                (long long)conf->clock_offset_s);
    return s;
}
