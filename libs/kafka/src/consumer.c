/*
 * Group consumer on the loop (see od/kafka.h).
 *
 * rd_kafka_poll_set_consumer() forwards the main queue (errors, statistics,
 * logs, rebalances) to the consumer queue, so one io event on that queue wakes
 * the loop for everything, and every callback runs inside
 * rd_kafka_consumer_poll() on the loop thread.
 *
 * A message's life:
 *
 *   rd_kafka_consumer_poll ──(not paused, nothing held)──> tracked + on_message
 *          │                                                 │
 *          └──(paused, or older messages held)──> c->held ───┘ (after resume, from the loop)
 *
 *   tracked: c->parts[partition].track, until od_kcons_done marks it; the done
 *   prefix is popped and rd_kafka_offsets_store(last popped + 1) makes it
 *   committable (auto-commit each second, synchronous commit on revoke/close).
 *
 * Tokens carry the assignment generation; a rebalance bumps it, so tokens of
 * revoked work are ignored (their messages go to the partition's next owner).
 *
 * Pause: librdkafka's pause bumps the partition's version barrier, so messages
 * already fetched but not yet polled are dropped inside rd_kafka_consumer_poll
 * and fetched again on resume from the position after the last message
 * polled. Messages polled before the pause and not yet handed out (the rest of
 * a batch when on_message pauses) are what `held` keeps.
 *
 * Librdkafka keeps a partition's pause flag across rebalances until it is
 * resumed; resuming a partition that is not paused is harmful in 2.0.2 (the
 * version bump discards fetched messages while fetching continues after them:
 * librdkafka issue #4686). So we remember exactly what we paused
 * (c->paused_parts) and resume exactly that.
 */
#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_int.h"
#include "od/core.h"
#include "od/kafka.h"
#include "od/log.h"
#include "od/metrics.h"

#define CONS_POLL_PERIOD_MS 100
/* messages handed out per loop turn before yielding to other handles */
#define CONS_BATCH 500

typedef struct cons_part {
    od__ktrack_t track;
    int assigned; /* in the current assignment */
    /* A one-element list for rd_kafka_offsets_store while assigned. After its
     * first use the element caches (and holds a reference on) librdkafka's
     * partition object in `_private`: it must never be re-pointed at another
     * partition, and must be destroyed before rd_kafka_destroy, which
     * otherwise waits forever for that reference. */
    rd_kafka_topic_partition_list_t *store;
} cons_part_t;

/* FIFO of polled messages not yet handed out (we own them) */
typedef struct held_fifo {
    rd_kafka_message_t **v;
    size_t cap; /* power of two or 0 */
    size_t head, len;
} held_fifo_t;

struct od_kcons {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *cq;          /* the consumer queue (io event) */
    od__kwatch_t watch;
    uv_idle_t later;               /* continues delivery from the loop: after resume, or a full batch */
    int later_open;
    char *group, *topic;
    od_kcons_handlers_t h;
    void *arg;
    uint32_t generation;           /* 0 is never used: it marks untracked tokens */
    cons_part_t *parts;            /* by partition number */
    size_t nparts;
    int nassigned;
    int pending;                   /* see od_kcons_pending */
    int paused;                    /* the service asked for a pause */
    rd_kafka_topic_partition_list_t *paused_parts; /* partitions we paused in librdkafka and must resume */
    held_fifo_t held;
    int64_t lag;
    int dispatching;               /* inside consume(): blocks re-entry */
    int closing;
    od__kratelimit_t rl_error, rl_store;
    od_metric_t *m_errors, *m_consumed, *m_lag, *m_assigned;
    int partition_cnt;             /* see od_kcons_partition_count */
    int64_t partition_cnt_ms;
};

/* ---- held messages ---- */

static void held_push(held_fifo_t *f, rd_kafka_message_t *m)
{
    if (f->len == f->cap) {
        size_t ncap = f->cap == 0 ? 64 : f->cap * 2;
        rd_kafka_message_t **nv = od_malloc(ncap * sizeof(*nv));
        for (size_t i = 0; i < f->len; i++)
            nv[i] = f->v[(f->head + i) & (f->cap - 1)];
        free(f->v);
        f->v = nv;
        f->cap = ncap;
        f->head = 0;
    }
    f->v[(f->head + f->len) & (f->cap - 1)] = m;
    f->len++;
}

static rd_kafka_message_t *held_pop(held_fifo_t *f)
{
    if (f->len == 0)
        return NULL;
    rd_kafka_message_t *m = f->v[f->head];
    f->head = (f->head + 1) & (f->cap - 1);
    f->len--;
    return m;
}

static int part_in(const rd_kafka_topic_partition_list_t *parts, int32_t partition)
{
    for (int i = 0; i < parts->cnt; i++)
        if (parts->elems[i].partition == partition)
            return 1;
    return 0;
}

/* Drops (destroys) held messages of `parts` (all if NULL), keeping the order of the rest. */
static void held_drop(held_fifo_t *f, const rd_kafka_topic_partition_list_t *parts)
{
    size_t n = f->len;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_message_t *m = held_pop(f);
        if (parts == NULL || part_in(parts, m->partition))
            rd_kafka_message_destroy(m);
        else
            held_push(f, m);
    }
}

/* ---- partitions and offsets ---- */

static cons_part_t *part_get(od_kcons_t *c, int32_t partition)
{
    if (partition < 0 || (size_t)partition >= c->nparts)
        return NULL;
    return &c->parts[partition];
}

static void part_assign(od_kcons_t *c, int32_t partition)
{
    assert(partition >= 0);
    if ((size_t)partition >= c->nparts) {
        size_t n = (size_t)partition + 1;
        c->parts = od_realloc(c->parts, n * sizeof(*c->parts));
        for (size_t i = c->nparts; i < n; i++) {
            od__ktrack_init(&c->parts[i].track);
            c->parts[i].assigned = 0;
            c->parts[i].store = NULL;
        }
        c->nparts = n;
    }
    cons_part_t *cp = &c->parts[partition];
    od__ktrack_reset(&cp->track);
    cp->assigned = 1;
    if (cp->store == NULL) {
        cp->store = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(cp->store, c->topic, partition);
    }
}

static void part_release(od_kcons_t *c, cons_part_t *cp)
{
    c->pending -= (int)od__ktrack_pending(&cp->track);
    od__ktrack_reset(&cp->track);
    cp->assigned = 0;
    if (cp->store != NULL) {
        rd_kafka_topic_partition_list_destroy(cp->store);
        cp->store = NULL;
    }
}

static void recount_assigned(od_kcons_t *c)
{
    c->nassigned = 0;
    for (size_t i = 0; i < c->nparts; i++)
        c->nassigned += c->parts[i].assigned;
    od_metric_set(c->m_assigned, c->nassigned);
}

static void store_offset(od_kcons_t *c, cons_part_t *cp, int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_t *tp = &cp->store->elems[0];
    assert(tp->partition == partition);
    tp->offset = offset;
    tp->err = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t err = rd_kafka_offsets_store(c->rk, cp->store);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
        err = tp->err;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        int suppressed;
        char note[64];
        if (od__kratelimit_allow(&c->rl_store, &suppressed))
            od_warn("kafka consumer %s: storing offset %s [%d] @ %lld: %s%s", c->group, c->topic, (int)partition,
                    (long long)offset, rd_kafka_err2str(err), od__kratelimit_note(suppressed, note, sizeof(note)));
    }
}

/* ---- pause bookkeeping ---- */

static void pause_parts(od_kcons_t *c, const rd_kafka_topic_partition_list_t *parts)
{
    if (parts->cnt == 0)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_copy(parts);
    rd_kafka_pause_partitions(c->rk, l);
    for (int i = 0; i < l->cnt; i++) {
        if (l->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR)
            od_warn("kafka consumer %s: pausing %s [%d]: %s", c->group, l->elems[i].topic,
                    (int)l->elems[i].partition, rd_kafka_err2str(l->elems[i].err));
        else if (rd_kafka_topic_partition_list_find(c->paused_parts, l->elems[i].topic, l->elems[i].partition) == NULL)
            rd_kafka_topic_partition_list_add(c->paused_parts, l->elems[i].topic, l->elems[i].partition);
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* ---- delivery ---- */

static void on_later(uv_idle_t *h);

static void schedule_later(od_kcons_t *c)
{
    if (c->later_open && !c->closing)
        uv_idle_start(&c->later, on_later);
}

static void deliver(od_kcons_t *c, rd_kafka_message_t *m)
{
    cons_part_t *cp = part_get(c, m->partition);
    if (cp == NULL || !cp->assigned) {
        /* not ours any more (revoked while held): the new owner gets it */
        rd_kafka_message_destroy(m);
        return;
    }
    od_ktoken_t tok = {.partition = m->partition, .offset = m->offset, .generation = c->generation};
    od__ktrack_t *t = &cp->track;
    if (t->len > 0 && m->offset <= t->offsets[(t->head + t->len - 1) & (t->cap - 1)]) {
        /* An offset at or before one already handed out in this generation
         * (the fetch position moved back, e.g. an offset reset). Deliver it
         * (at least once) but keep it out of the ordered tracker. */
        od_warn("kafka consumer %s: %s [%d] @ %lld redelivered out of order; not tracked", c->group, c->topic,
                (int)m->partition, (long long)m->offset);
        tok.generation = 0;
    } else {
        od__ktrack_push(t, m->offset);
        c->pending++;
    }
    od_metric_add(c->m_consumed, 1);
    c->h.on_message(c->arg, m, tok);
    rd_kafka_message_destroy(m);
}

static void consumer_error(od_kcons_t *c, const rd_kafka_message_t *m)
{
    int suppressed;
    char note[64];
    od_metric_add(c->m_errors, 1);
    if (od__kratelimit_allow(&c->rl_error, &suppressed))
        od_warn("kafka consumer %s: %s [%d]: %s: %s%s", c->group,
                m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "-", (int)m->partition, rd_kafka_err2name(m->err),
                rd_kafka_message_errstr(m), od__kratelimit_note(suppressed, note, sizeof(note)));
}

/*
 * Hands out held messages (unless paused), then polls: every poll also runs
 * rebalance, error, statistics and log callbacks. Stops after CONS_BATCH
 * messages and comes back from `later`, since librdkafka sends no new wake-up
 * while the queue stays non-empty.
 */
static void consume(od_kcons_t *c)
{
    if (c->dispatching || c->closing)
        return;
    c->dispatching = 1;
    int n = 0;
    while (!c->paused && c->held.len > 0 && !c->closing) {
        if (n++ == CONS_BATCH) {
            schedule_later(c);
            goto out;
        }
        deliver(c, held_pop(&c->held));
    }
    while (!c->closing) {
        if (n++ >= CONS_BATCH) {
            schedule_later(c);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
        if (m == NULL)
            break;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            consumer_error(c, m);
            rd_kafka_message_destroy(m);
        } else if (c->paused || c->held.len > 0) {
            held_push(&c->held, m);
        } else {
            deliver(c, m);
        }
    }
out:
    c->dispatching = 0;
}

static void serve(od__kwatch_t *w)
{
    consume(w->data);
}

static void on_later(uv_idle_t *h)
{
    od_kcons_t *c = h->data;
    uv_idle_stop(h);
    consume(c);
}

/* ---- librdkafka callbacks (all inside rd_kafka_consumer_poll or rd_kafka_consumer_close) ---- */

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    od_kcons_t *c = opaque;
    rd_kafka_resp_err_t aerr;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (++c->generation == 0)
            c->generation = 1;
        for (int i = 0; i < parts->cnt; i++)
            part_assign(c, parts->elems[i].partition);
        if ((aerr = rd_kafka_assign(rk, parts)) != RD_KAFKA_RESP_ERR_NO_ERROR)
            od_error("kafka consumer %s: assign: %s", c->group, rd_kafka_err2str(aerr));
        if (c->paused)
            pause_parts(c, parts); /* pause is a property of the consumer, not of an assignment */
        recount_assigned(c);
        od_info("kafka consumer %s: assigned %d partitions of %s (generation %u)", c->group, parts->cnt, c->topic,
                c->generation);
        if (c->h.on_assign != NULL)
            c->h.on_assign(c->arg, parts);
        return;
    }

    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        od_info("kafka consumer %s: revoking %d partitions of %s", c->group, parts->cnt, c->topic);
        /* done() calls made inside on_revoke still count: the generation is still current */
        if (c->h.on_revoke != NULL)
            c->h.on_revoke(c->arg, parts);
        held_drop(&c->held, parts);
        /* Stored offsets already cover every done prefix (stored as done()
         * pops them); commit them now, before the partitions move. */
        if ((aerr = rd_kafka_commit(rk, NULL, 0)) != RD_KAFKA_RESP_ERR_NO_ERROR &&
            aerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
            od_warn("kafka consumer %s: commit on revoke: %s", c->group, rd_kafka_err2str(aerr));
    } else {
        od_error("kafka consumer %s: rebalance error: %s", c->group, rd_kafka_err2str(err));
        held_drop(&c->held, NULL);
    }
    if ((aerr = rd_kafka_assign(rk, NULL)) != RD_KAFKA_RESP_ERR_NO_ERROR)
        od_warn("kafka consumer %s: unassign: %s", c->group, rd_kafka_err2str(aerr));
    for (size_t i = 0; i < c->nparts; i++)
        if (c->parts[i].assigned && (err != RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS || part_in(parts, (int32_t)i)))
            part_release(c, &c->parts[i]);
    if (++c->generation == 0)
        c->generation = 1;
    recount_assigned(c);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    od_kcons_t *c = opaque;
    int suppressed;
    char note[64];
    od_metric_add(c->m_errors, 1);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, why, sizeof(why));
        od_error("kafka consumer %s: fatal error %s: %s", c->group, rd_kafka_err2name(ferr), why);
        return;
    }
    if (od__kratelimit_allow(&c->rl_error, &suppressed))
        od_warn("kafka consumer %s: %s: %s%s", c->group, rd_kafka_err2name(err),
                reason, od__kratelimit_note(suppressed, note, sizeof(note)));
}

/* Total lag = sum over assigned partitions of "consumer_lag" (log end - committed) */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    od_kcons_t *c = opaque;
    (void)rk;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *topics = root != NULL ? json_object_get(root, "topics") : NULL;
    json_t *tp = json_object_get(json_object_get(topics, c->topic), "partitions");
    int64_t sum = 0;
    int known = 0, unknown = 0;
    const char *key;
    json_t *pj;
    json_object_foreach(tp, key, pj)
    {
        cons_part_t *cp = part_get(c, (int32_t)atoi(key));
        if (cp == NULL || !cp->assigned)
            continue; /* "-1" (unassigned messages) or not ours */
        json_t *lj = json_object_get(pj, "consumer_lag");
        json_int_t lag = json_is_integer(lj) ? json_integer_value(lj) : -1;
        if (lag >= 0) {
            sum += lag;
            known++;
        } else {
            unknown++;
        }
    }
    if (root != NULL) {
        c->lag = c->nassigned == 0 ? 0 : known > 0 ? sum : -1;
        (void)unknown;
        od_metric_set(c->m_lag, (double)c->lag);
    }
    json_decref(root);
    return 0; /* librdkafka frees json */
}

/* ---- public ---- */

od_kcons_t *od_kcons_new(uv_loop_t *loop, const char *brokers, const char *group, const char *topic,
                         const od_kcons_handlers_t *handlers, void *arg, const char *const *extra, char *errstr,
                         size_t errlen)
{
    assert(loop != NULL && brokers != NULL && group != NULL && topic != NULL && handlers != NULL &&
           handlers->on_message != NULL);
    const char *const defaults[] = {
        "bootstrap.servers", brokers,
        "group.id", group,
        "client.id", group,
        /* we store offsets ourselves, only over the done prefix */
        "enable.auto.offset.store", "false",
        "enable.auto.commit", "true",
        "auto.commit.interval.ms", "1000",
        "auto.offset.reset", "earliest",
        "enable.partition.eof", "false",
        /* A member that dies (crash, SIGKILL) is noticed after 10 s and its
         * partitions move; librdkafka's 45 s default would stall their
         * messages for that long. Heartbeats at a third of it, as Kafka
         * recommends, survive two lost heartbeats. The broker's
         * group.min.session.timeout.ms (6 s by default) allows it. */
        "session.timeout.ms", "10000",
        "heartbeat.interval.ms", "3000",
        /* the loop polls at least every CONS_POLL_PERIOD_MS, even when paused */
        "max.poll.interval.ms", "300000",
        "statistics.interval.ms", "5000",
        NULL,
    };
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    od_kcons_t *c = od_calloc(1, sizeof(*c));
    c->loop = loop;
    c->group = od_strdup(group);
    c->topic = od_strdup(topic);
    c->h = *handlers;
    c->arg = arg;
    c->generation = 1;
    c->lag = -1;
    c->paused_parts = rd_kafka_topic_partition_list_new(4);
    char label[256];
    od__klabel(label, sizeof(label), "client", group);
    c->m_errors = od_counter("outdial_kafka_errors_total", label,
                             "librdkafka errors (error callback and consumer error events)");
    c->m_consumed = od_counter("outdial_kafka_consumed_total", label, "Messages handed to the service");
    c->m_lag = od_gauge("outdial_kafka_consumer_lag", label,
                        "Messages after the committed offsets of the assigned partitions (-1 unknown)");
    c->m_assigned = od_gauge("outdial_kafka_assigned_partitions", label, "Partitions assigned to this member");
    od_metric_set(c->m_lag, -1);

    if (od__kconf_set_list(conf, defaults, errstr, errlen) != 0 ||
        od__kconf_set_list(conf, extra, errstr, errlen) != 0 || od__kconf_log(conf, errstr, errlen) != 0)
        goto fail_conf;
    rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_opaque(conf, c);
    if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, errlen)) == NULL)
        goto fail_conf;
    rd_kafka_set_log_queue(c->rk, NULL);
    rd_kafka_poll_set_consumer(c->rk);
    /* the io event goes on the final queue of the forwarding chain */
    c->cq = rd_kafka_queue_get_consumer(c->rk);
    if (od__kwatch_start(&c->watch, loop, c->cq, CONS_POLL_PERIOD_MS, serve, c, errstr, errlen) != 0)
        goto fail_rk;
    uv_idle_init(loop, &c->later);
    c->later.data = c;
    c->later_open = 1;

    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errlen, "subscribe %s: %s", topic, rd_kafka_err2str(err));
        /* the handles are live now: the regular teardown frees everything */
        od_kcons_destroy(c);
        return NULL;
    }
    return c;

fail_rk:
    rd_kafka_queue_destroy(c->cq);
    rd_kafka_destroy(c->rk);
    conf = NULL;
fail_conf:
    if (conf != NULL)
        rd_kafka_conf_destroy(conf);
    rd_kafka_topic_partition_list_destroy(c->paused_parts);
    free(c->group);
    free(c->topic);
    free(c);
    return NULL;
}

void od_kcons_done(od_kcons_t *c, od_ktoken_t tok)
{
    if (tok.generation != c->generation)
        return; /* stale: the partition was revoked since */
    cons_part_t *cp = part_get(c, tok.partition);
    if (cp == NULL || !cp->assigned)
        return;
    if (od__ktrack_mark(&cp->track, tok.offset) != 0) {
        od_debug("kafka consumer %s: done(%d, %lld): unknown or already done", c->group, (int)tok.partition,
                 (long long)tok.offset);
        return;
    }
    c->pending--;
    int64_t last = od__ktrack_pop_done(&cp->track);
    if (last >= 0)
        store_offset(c, cp, tok.partition, last + 1);
}

void od_kcons_pause(od_kcons_t *c)
{
    if (c->paused)
        return;
    c->paused = 1;
    if (c->closing)
        return;
    rd_kafka_topic_partition_list_t *a = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(c->rk, &a);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        od_warn("kafka consumer %s: assignment: %s", c->group, rd_kafka_err2str(err));
    else
        pause_parts(c, a);
    if (a != NULL)
        rd_kafka_topic_partition_list_destroy(a);
}

void od_kcons_resume(od_kcons_t *c)
{
    if (!c->paused)
        return;
    c->paused = 0;
    if (c->closing)
        return;
    if (c->paused_parts->cnt > 0) {
        rd_kafka_resume_partitions(c->rk, c->paused_parts);
        rd_kafka_topic_partition_list_destroy(c->paused_parts);
        c->paused_parts = rd_kafka_topic_partition_list_new(4);
    }
    /* Held messages go out from the loop, never from inside the caller
     * (which may be on_message or another callback of ours). */
    schedule_later(c);
}

int od_kcons_assigned(const od_kcons_t *c)
{
    return c->nassigned;
}

int od_kcons_pending(const od_kcons_t *c)
{
    return c->pending;
}

int64_t od_kcons_lag(const od_kcons_t *c)
{
    return c->lag;
}

static void free_consumer(od_kcons_t *c)
{
    for (size_t i = 0; i < c->nparts; i++)
        assert(c->parts[i].store == NULL && c->parts[i].track.len == 0);
    free(c->parts);
    free(c->held.v);
    rd_kafka_topic_partition_list_destroy(c->paused_parts);
    free(c->group);
    free(c->topic);
    free(c);
}

static void on_later_closed(uv_handle_t *h)
{
    od_kcons_t *c = h->data;
    c->later_open = 0;
    if (c->watch.open_handles == 0)
        free_consumer(c);
}

static void on_watch_closed(od__kwatch_t *w)
{
    od_kcons_t *c = w->data;
    if (!c->later_open)
        free_consumer(c);
}

void od_kcons_destroy(od_kcons_t *c)
{
    assert(!c->dispatching); /* not from inside one of this consumer's callbacks */
    c->closing = 1;
    od__kwatch_stop(&c->watch);
    uv_idle_stop(&c->later);
    /* Leaves the group: our rebalance callback runs for the revoke (on_revoke,
     * synchronous commit of the done prefixes), served inside close. */
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        od_warn("kafka consumer %s: close: %s", c->group, rd_kafka_err2str(err));
    held_drop(&c->held, NULL);
    /* release every reference we hold on librdkafka objects before destroy */
    for (size_t i = 0; i < c->nparts; i++)
        part_release(c, &c->parts[i]);
    rd_kafka_queue_destroy(c->cq);
    rd_kafka_destroy(c->rk);
    c->rk = NULL;
    /* freed once both the watch's handles and `later` are closed */
    od__kwatch_close(&c->watch, on_watch_closed);
    uv_close((uv_handle_t *)&c->later, on_later_closed);
}

int od_kcons_partition_count(od_kcons_t *c)
{
    int64_t now = od_mono_ms();
    if (c->partition_cnt_ms != 0 && now - c->partition_cnt_ms < 30000)
        return c->partition_cnt;
    c->partition_cnt_ms = now;
    /* all topics: creating topic handles on a consumer handle is avoided on purpose */
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(c->rk, 1, NULL, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < md->topic_cnt; i++)
            if (strcmp(md->topics[i].topic, c->topic) == 0 && md->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR)
                c->partition_cnt = md->topics[i].partition_cnt;
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    if (c->partition_cnt <= 0) {
        c->partition_cnt = -1;
        c->partition_cnt_ms = now - 25000; /* unknown: ask again in 5 s, not on every call */
    }
    return c->partition_cnt;
}
