/*
 * Idempotent producer on the loop (see od/kafka.h).
 *
 * Every od_kprod_send that returns 0 owns one `od_kdr` record (the message's
 * opaque) on p->inflight_list until its delivery report; the record carries
 * the caller's cb + arg. Delivery reports, errors, statistics and
 * librdkafka's log lines all arrive on the main queue, which the loop serves
 * with rd_kafka_poll(rk, 0) when the queue's io event wakes it (queue_watch.c).
 *
 *   od_kprod_send ──> p->inflight_list ──(delivery report)──> cb(arg, err), freed
 *                            │
 *                            └──(od_kprod_destroy: flush, purge, or destroy)──> cb(arg, _PURGE_*)
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

#define PROD_POLL_PERIOD_MS 200
/* after purging at destroy, how long to wait for the purge reports */
#define PROD_PURGE_WAIT_MS 2000

typedef struct od_kdr {
    od_kprod_cb cb;
    void *arg;
    struct od_kdr *prev, *next; /* on p->inflight_list */
} od_kdr_t;

typedef struct prod_topic {
    char *name;
    rd_kafka_topic_t *rkt;
} prod_topic_t;

struct od_kprod {
    uv_loop_t *loop;
    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    od__kwatch_t watch;
    char *client_id;
    prod_topic_t *topics; /* cache of topic handles, by name */
    size_t ntopics;
    od_kdr_t inflight_list; /* sentinel of the circular list of records awaiting their report */
    int inflight;
    int up;          /* see od_kprod_up */
    int fatal;       /* the idempotent producer hit a fatal error: every send fails from now on */
    int destroying;  /* od_kprod_destroy is running: sends are refused */
    int serving;     /* inside rd_kafka_poll (callbacks may run) */
    od__kratelimit_t rl_error, rl_dr;
    od_metric_t *m_errors, *m_produced, *m_failed, *m_up;
};

static void set_up(od_kprod_t *p, int up)
{
    if (p->fatal)
        up = 0;
    if (up != p->up)
        od_info("kafka producer %s: brokers %s", p->client_id, up ? "up" : "down");
    p->up = up;
    od_metric_set(p->m_up, up);
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    od_kprod_t *p = opaque;
    od_kdr_t *dr = m->_private;
    (void)rk;
    dr->prev->next = dr->next;
    dr->next->prev = dr->prev;
    p->inflight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        od_metric_add(p->m_produced, 1);
        set_up(p, 1);
    } else {
        int suppressed;
        char note[64];
        od_metric_add(p->m_failed, 1);
        if (od__kratelimit_allow(&p->rl_dr, &suppressed))
            od_warn("kafka producer %s: delivery to %s failed: %s%s", p->client_id,
                    m->rkt != NULL ? rd_kafka_topic_name(m->rkt) : "?", rd_kafka_err2str(m->err),
                    od__kratelimit_note(suppressed, note, sizeof(note)));
    }
    if (dr->cb != NULL)
        dr->cb(dr->arg, m->err);
    free(dr);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    od_kprod_t *p = opaque;
    int suppressed;
    char note[64];
    od_metric_add(p->m_errors, 1);
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[512];
        rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, why, sizeof(why));
        od_error("kafka producer %s: fatal error %s: %s (every send fails from now on)", p->client_id,
                 rd_kafka_err2name(ferr), why);
        p->fatal = 1;
        set_up(p, 0);
        return;
    }
    /* Note: an idle connection closed by the broker also counts as "down";
     * statistics (any broker UP) and successful deliveries bring `up` back. */
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        set_up(p, 0);
    if (od__kratelimit_allow(&p->rl_error, &suppressed))
        od_warn("kafka producer %s: %s: %s%s", p->client_id, rd_kafka_err2name(err),
                reason, od__kratelimit_note(suppressed, note, sizeof(note)));
}

/* Statistics only ever prove "up": with sparse connections an idle producer
 * may legitimately have no open connection. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    od_kprod_t *p = opaque;
    (void)rk;
    json_t *root = json_loadb(json, len, 0, NULL);
    json_t *brokers = root != NULL ? json_object_get(root, "brokers") : NULL;
    const char *name;
    json_t *b;
    json_object_foreach(brokers, name, b)
    {
        const char *state = json_string_value(json_object_get(b, "state"));
        if (state != NULL && strcmp(state, "UP") == 0) {
            set_up(p, 1);
            break;
        }
    }
    json_decref(root);
    return 0; /* librdkafka frees json */
}

static void serve(od__kwatch_t *w)
{
    od_kprod_t *p = w->data;
    /* rd_kafka_poll(rk, 0) serves everything queued at the time of the call;
     * loop until nothing is left so the io event is re-armed */
    p->serving = 1;
    while (rd_kafka_poll(p->rk, 0) > 0)
        ;
    p->serving = 0;
}

od_kprod_t *od_kprod_new(uv_loop_t *loop, const char *brokers, const char *client_id, const char *const *extra,
                         char *errstr, size_t errlen)
{
    const char *const defaults[] = {
        "bootstrap.servers", brokers,
        "client.id", client_id,
        "enable.idempotence", "true",
        "acks", "all",
        /* the Java client's partitioner: keys land where Java tools and Kafka Streams expect */
        "partitioner", "murmur2_random",
        /* Sends of one loop turn (a burst) share a ProduceRequest; 2 ms adds
         * little latency while cutting requests (librdkafka's default is 5). */
        "linger.ms", "2",
        /* After this the delivery report fails (_MSG_TIMED_OUT) and the caller
         * falls back on its PostgreSQL recovery path; waiting longer would
         * only hold the caller's state. */
        "message.timeout.ms", "10000",
        "statistics.interval.ms", "5000",
        NULL,
    };
    assert(loop != NULL && brokers != NULL && client_id != NULL);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    od_kprod_t *p = od_calloc(1, sizeof(*p));
    p->loop = loop;
    p->client_id = od_strdup(client_id);
    p->up = 1; /* optimistic until the first error, report or statistics */
    p->inflight_list.prev = p->inflight_list.next = &p->inflight_list;
    char label[256];
    od__klabel(label, sizeof(label), "client", client_id);
    p->m_errors = od_counter("outdial_kafka_errors_total", label,
                             "librdkafka errors (error callback and consumer error events)");
    p->m_produced = od_counter("outdial_kafka_produced_total", label, "Messages the broker acknowledged (acks=all)");
    p->m_failed = od_counter("outdial_kafka_delivery_failed_total", label, "Messages whose delivery report failed");
    p->m_up = od_gauge("outdial_kafka_producer_up", label, "1 while the producer sees a broker up");
    od_metric_set(p->m_up, 1);

    if (od__kconf_set_list(conf, defaults, errstr, errlen) != 0 ||
        od__kconf_set_list(conf, extra, errstr, errlen) != 0 || od__kconf_log(conf, errstr, errlen) != 0)
        goto fail_conf;
    rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_opaque(conf, p);
    if ((p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen)) == NULL)
        goto fail_conf; /* conf still ours */
    rd_kafka_set_log_queue(p->rk, NULL);
    p->mainq = rd_kafka_queue_get_main(p->rk);
    if (od__kwatch_start(&p->watch, loop, p->mainq, PROD_POLL_PERIOD_MS, serve, p, errstr, errlen) != 0) {
        rd_kafka_queue_destroy(p->mainq);
        rd_kafka_destroy(p->rk);
        goto fail;
    }
    return p;

fail_conf:
    rd_kafka_conf_destroy(conf);
fail:
    free(p->client_id);
    free(p);
    return NULL;
}

static rd_kafka_topic_t *topic_get(od_kprod_t *p, const char *name)
{
    for (size_t i = 0; i < p->ntopics; i++)
        if (strcmp(p->topics[i].name, name) == 0)
            return p->topics[i].rkt;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(p->rk, name, NULL);
    if (rkt == NULL)
        return NULL;
    p->topics = od_realloc(p->topics, sizeof(*p->topics) * (p->ntopics + 1));
    p->topics[p->ntopics].name = od_strdup(name);
    p->topics[p->ntopics].rkt = rkt;
    p->ntopics++;
    return rkt;
}

int od_kprod_send(od_kprod_t *p, const char *topic, const void *key, size_t keylen, const void *payload, size_t len,
                  od_kprod_cb cb, void *arg)
{
    if (p->destroying)
        return RD_KAFKA_RESP_ERR__DESTROY;
    rd_kafka_topic_t *rkt = topic_get(p, topic);
    if (rkt == NULL)
        return rd_kafka_last_error();
    od_kdr_t *dr = od_malloc(sizeof(*dr));
    dr->cb = cb;
    dr->arg = arg;
    rd_kafka_resp_err_t err = rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, keylen),
                                                RD_KAFKA_V_VALUE((void *)payload, len),
                                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(dr),
                                                RD_KAFKA_V_END);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(dr);
        return err;
    }
    dr->next = &p->inflight_list;
    dr->prev = p->inflight_list.prev;
    dr->prev->next = dr;
    p->inflight_list.prev = dr;
    p->inflight++;
    return 0;
}

int od_kprod_inflight(const od_kprod_t *p)
{
    return p->inflight;
}

int od_kprod_up(const od_kprod_t *p)
{
    return p->up && !p->fatal;
}

static void on_watch_closed(od__kwatch_t *w)
{
    free(w->data);
}

void od_kprod_destroy(od_kprod_t *p, int timeout_ms)
{
    /* destroying from inside one of this producer's callbacks would free the
     * producer under rd_kafka_poll: defer it to the loop instead */
    assert(!p->serving);
    p->destroying = 1;
    od__kwatch_stop(&p->watch);
    /* flush() serves the main queue (delivery reports run here) */
    rd_kafka_flush(p->rk, timeout_ms < 0 ? 0 : timeout_ms);
    if (p->inflight > 0) {
        od_warn("kafka producer %s: %d messages not reported after %d ms, purging", p->client_id, p->inflight,
                timeout_ms);
        /* purged messages get their reports (_PURGE_QUEUE, _PURGE_INFLIGHT) on the main queue */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        int64_t until = od_mono_ms() + PROD_PURGE_WAIT_MS;
        while (p->inflight > 0 && od_mono_ms() < until)
            rd_kafka_poll(p->rk, 10);
    }
    for (size_t i = 0; i < p->ntopics; i++) {
        rd_kafka_topic_destroy(p->topics[i].rkt);
        free(p->topics[i].name);
    }
    free(p->topics);
    rd_kafka_queue_destroy(p->mainq);
    rd_kafka_destroy(p->rk);
    /* Whatever librdkafka never reported (it drops queued reports at destroy)
     * is reported here, so every callback runs exactly once. */
    while (p->inflight_list.next != &p->inflight_list) {
        od_kdr_t *dr = p->inflight_list.next;
        dr->prev->next = dr->next;
        dr->next->prev = dr->prev;
        p->inflight--;
        if (dr->cb != NULL)
            dr->cb(dr->arg, RD_KAFKA_RESP_ERR__PURGE_INFLIGHT);
        free(dr);
    }
    free(p->client_id);
    od__kwatch_close(&p->watch, on_watch_closed);
}

int32_t od_kafka_partition_for(const void *key, size_t keylen, int32_t partition_cnt)
{
    assert(partition_cnt > 0);
    if (key == NULL)
        return RD_KAFKA_PARTITION_UA; /* murmur2_random: keyless messages go to a (sticky) random partition */
    /* librdkafka 2.0.2 (rdkafka_msg.c) computes (rd_murmur2(key) & 0x7fffffff) % cnt and
     * reads neither the topic nor the opaques: calling it without a topic is safe. */
    return rd_kafka_msg_partitioner_murmur2(NULL, key, keylen, partition_cnt, NULL, NULL);
}
