/*
 * libs/kafka against a real broker (OUTDIAL_TEST_KAFKA_BROKERS=host:port).
 *
 * Without a broker only the offset tracker and the partitioner vectors run,
 * then the test exits 77 (skipped).
 *
 * With a broker, on a fresh topic of 4 partitions:
 *   1. 1000 keyed messages produced, every delivery report OK, exactly once;
 *   2. a consumer (group g1) gets them all, each in the partition that
 *      od_kafka_partition_for predicts;
 *   3. done out of order: the committed offsets cover the done prefix only;
 *   4. a second member of g1 takes partitions over and gets the uncommitted
 *      messages again; stale tokens are ignored;
 *   5. a consumer of group g2 pauses inside on_message (nothing delivered
 *      while paused), resumes from a timer; a pause+resume inside on_message;
 *      every message arrives in order, none lost or repeated; lag reaches 0;
 *   6. a producer without a broker: od_kprod_up drops to 0, destroy purges
 *      and reports every message exactly once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "kafka_int.h"
#include "od/core.h"
#include "od/kafka.h"
#include "od/log.h"
#include "od/metrics.h"

#define NPART 4
#define NMSG 1000

#define CHECK(c)                                                                                                       \
    do {                                                                                                               \
        if (!(c)) {                                                                                                    \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);                                      \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

static uv_loop_t *loop;
static const char *brokers;
static char topic[64];

/* ---------------------------------------------------------------- loop helpers */

static uv_timer_t tick; /* keeps uv_run(ONCE) returning while we wait on conditions */
static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static int run_until(int (*cond)(void *), void *arg, int timeout_ms)
{
    int64_t end = od_mono_ms() + timeout_ms;
    while (!cond(arg)) {
        if (od_mono_ms() > end)
            return -1;
        uv_run(loop, UV_RUN_ONCE);
    }
    return 0;
}

static int never(void *arg)
{
    (void)arg;
    return 0;
}

static void run_for(int ms)
{
    run_until(never, NULL, ms);
}

/* ---------------------------------------------------------------- broker-less parts */

static void test_tracker(void)
{
    od__ktrack_t t;
    od__ktrack_init(&t);
    CHECK(od__ktrack_pop_done(&t) == -1);
    /* contiguous, more than one ring's worth, done out of order */
    for (int64_t o = 100; o < 300; o++)
        od__ktrack_push(&t, o);
    CHECK(od__ktrack_pending(&t) == 200);
    CHECK(od__ktrack_mark(&t, 101) == 0);
    CHECK(od__ktrack_mark(&t, 101) == -1); /* twice */
    CHECK(od__ktrack_mark(&t, 99) == -1);  /* never handed out */
    CHECK(od__ktrack_mark(&t, 300) == -1);
    CHECK(od__ktrack_pop_done(&t) == -1); /* 100 still pending */
    CHECK(od__ktrack_mark(&t, 100) == 0);
    CHECK(od__ktrack_pop_done(&t) == 101);
    for (int64_t o = 299; o >= 103; o--)
        CHECK(od__ktrack_mark(&t, o) == 0);
    CHECK(od__ktrack_pop_done(&t) == -1); /* 102 pending */
    CHECK(od__ktrack_pending(&t) == 1);
    /* wrap around the ring while entries are live */
    for (int64_t o = 300; o < 340; o++)
        od__ktrack_push(&t, o);
    CHECK(od__ktrack_mark(&t, 102) == 0);
    CHECK(od__ktrack_pop_done(&t) == 299);
    CHECK(t.len == 40);
    /* gaps (compaction, transaction markers): binary search path */
    od__ktrack_reset(&t);
    int64_t gapped[] = {5, 6, 9, 20, 21, 22, 40, 1000};
    for (size_t i = 0; i < OD_ARRAY_SIZE(gapped); i++)
        od__ktrack_push(&t, gapped[i]);
    CHECK(od__ktrack_mark(&t, 7) == -1);
    CHECK(od__ktrack_mark(&t, 22) == 0);
    CHECK(od__ktrack_mark(&t, 1000) == 0);
    CHECK(od__ktrack_mark(&t, 5) == 0);
    CHECK(od__ktrack_mark(&t, 9) == 0);
    CHECK(od__ktrack_pop_done(&t) == 5);
    CHECK(od__ktrack_mark(&t, 6) == 0);
    CHECK(od__ktrack_pop_done(&t) == 9);
    CHECK(od__ktrack_mark(&t, 20) == 0 && od__ktrack_mark(&t, 21) == 0 && od__ktrack_mark(&t, 40) == 0);
    CHECK(od__ktrack_pop_done(&t) == 1000);
    CHECK(t.len == 0 && od__ktrack_pending(&t) == 0);
    od__ktrack_reset(&t);
}

/* Computed with the Java client (kafka-clients 3.9.1):
 * Utils.toPositive(Utils.murmur2(key.getBytes(UTF_8))) % n, n = 1, 3, 4, 12, 100 */
static void test_partitioner_vectors(void)
{
    static const struct {
        const char *key;
        int32_t want[5];
    } v[] = {
        {"", {0, 0, 1, 9, 81}},
        {"a", {0, 1, 0, 4, 24}},
        {"ab", {0, 2, 2, 2, 34}},
        {"abc", {0, 0, 3, 3, 7}},
        {"abcd", {0, 2, 0, 8, 0}},
        {"abcde", {0, 1, 1, 1, 41}},
        {"key-0", {0, 1, 1, 1, 41}},
        {"key-1", {0, 0, 0, 0, 40}},
        {"key-999", {0, 0, 0, 0, 8}},
        {"campaign:42/contact:1234567", {0, 2, 2, 2, 98}},
        {"0123456789abcdef0123", {0, 1, 0, 4, 8}},
        {"\xc3\xa9t\xc3\xa9", {0, 1, 1, 1, 73}},
    };
    static const int32_t cnts[5] = {1, 3, 4, 12, 100};
    for (size_t i = 0; i < OD_ARRAY_SIZE(v); i++)
        for (int j = 0; j < 5; j++)
            CHECK(od_kafka_partition_for(v[i].key, strlen(v[i].key), cnts[j]) == v[i].want[j]);
    CHECK(od_kafka_partition_for(NULL, 0, 4) == RD_KAFKA_PARTITION_UA);
}

/* ---------------------------------------------------------------- broker helpers */

static rd_kafka_conf_t *raw_conf(const char *group)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", brokers, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK);
    if (group != NULL)
        CHECK(rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) == RD_KAFKA_CONF_OK);
    return conf;
}

static void create_topic(const char *name, int partitions)
{
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, raw_conf(NULL), errstr, sizeof(errstr));
    CHECK(rk != NULL);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(name, partitions, 1, errstr, sizeof(errstr));
    CHECK(nt != NULL);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    CHECK(rd_kafka_AdminOptions_set_operation_timeout(opt, 10000, errstr, sizeof(errstr)) == 0);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 20000);
    CHECK(ev != NULL && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_CREATETOPICS_RESULT);
    CHECK(rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR);
    size_t cnt;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &cnt);
    CHECK(cnt == 1);
    if (rd_kafka_topic_result_error(tr[0]) != RD_KAFKA_RESP_ERR_NO_ERROR)
        fprintf(stderr, "create %s: %s\n", name, rd_kafka_topic_result_error_string(tr[0]));
    CHECK(rd_kafka_topic_result_error(tr[0]) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_NewTopic_destroy(nt);
    rd_kafka_destroy(rk);
}

/* The group's committed offsets, as the broker has them (RD_KAFKA_OFFSET_INVALID: none). */
static void committed(const char *group, int64_t out[NPART])
{
    char errstr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, raw_conf(group), errstr, sizeof(errstr));
    CHECK(rk != NULL);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(NPART);
    for (int p = 0; p < NPART; p++)
        rd_kafka_topic_partition_list_add(l, topic, p);
    CHECK(rd_kafka_committed(rk, l, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int p = 0; p < NPART; p++) {
        rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_find(l, topic, p);
        CHECK(tp != NULL && tp->err == RD_KAFKA_RESP_ERR_NO_ERROR);
        out[p] = tp->offset;
    }
    rd_kafka_topic_partition_list_destroy(l);
    rd_kafka_destroy(rk);
}

/* ---------------------------------------------------------------- producer */

typedef struct report {
    int n;                   /* callbacks received */
    rd_kafka_resp_err_t err; /* of the last one */
} report_t;

static void on_sent(void *arg, rd_kafka_resp_err_t err)
{
    report_t *r = arg;
    r->n++;
    r->err = err;
}

typedef struct reports {
    report_t *r;
    int n;
} reports_t;

static int all_reported(void *arg)
{
    reports_t *rs = arg;
    for (int i = 0; i < rs->n; i++)
        if (rs->r[i].n == 0)
            return 0;
    return 1;
}

static void test_produce(void)
{
    char errstr[512];
    od_kprod_t *p = od_kprod_new(loop, brokers, "test-prod", NULL, errstr, sizeof(errstr));
    CHECK(p != NULL);
    static report_t rep[NMSG];
    reports_t rs = {rep, NMSG};
    for (int i = 0; i < NMSG; i++) {
        char key[32], val[32];
        int kl = snprintf(key, sizeof(key), "key-%d", i);
        int vl = snprintf(val, sizeof(val), "%d", i);
        CHECK(od_kprod_send(p, topic, key, (size_t)kl, val, (size_t)vl, on_sent, &rep[i]) == 0);
    }
    CHECK(od_kprod_inflight(p) == NMSG);
    CHECK(run_until(all_reported, &rs, 30000) == 0);
    for (int i = 0; i < NMSG; i++) {
        CHECK(rep[i].n == 1);
        CHECK(rep[i].err == RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    CHECK(od_kprod_inflight(p) == 0);
    CHECK(od_kprod_up(p) == 1);
    CHECK(od_metric_value(od_counter("outdial_kafka_produced_total", "client=\"test-prod\"", "")) == NMSG);
    /* bad configuration fails at once */
    const char *const bad[] = {"no.such.property", "1", NULL};
    CHECK(od_kprod_new(loop, brokers, "test-bad", bad, errstr, sizeof(errstr)) == NULL);
    CHECK(strstr(errstr, "no.such.property") != NULL);
    od_kprod_destroy(p, 5000);
    for (int i = 0; i < NMSG; i++)
        CHECK(rep[i].n == 1);
}

/* ---------------------------------------------------------------- consumers */

typedef struct rec {
    int32_t partition;
    int64_t offset;
    od_ktoken_t tok;
} rec_t;

typedef struct cons {
    od_kcons_t *c;
    rec_t recs[8 * NMSG];
    int n;
    int wrong_partition; /* messages not where od_kafka_partition_for says */
    int assigns, revokes;
    int pause_at;        /* pause inside on_message at this count (0: never) */
    int pause_resume_at; /* pause and resume inside on_message at this count */
    int paused;          /* the test considers the consumer paused */
    int while_paused;    /* messages delivered while paused (must stay 0) */
} cons_t;

static void on_message(void *arg, const rd_kafka_message_t *m, od_ktoken_t tok)
{
    cons_t *s = arg;
    CHECK(m->err == RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK(tok.partition == m->partition && tok.offset == m->offset);
    if (s->paused)
        s->while_paused++;
    char key[32];
    CHECK(m->key_len < sizeof(key));
    memcpy(key, m->key, m->key_len);
    key[m->key_len] = '\0';
    CHECK(strncmp(key, "key-", 4) == 0);
    CHECK(m->len == m->key_len - 4 && memcmp((const char *)m->payload, key + 4, m->len) == 0);
    if (od_kafka_partition_for(m->key, m->key_len, NPART) != m->partition)
        s->wrong_partition++;
    CHECK((size_t)s->n < OD_ARRAY_SIZE(s->recs));
    s->recs[s->n++] = (rec_t){m->partition, m->offset, tok};
    if (s->n == s->pause_at) {
        od_kcons_pause(s->c);
        od_kcons_pause(s->c); /* idempotent */
        s->paused = 1;
    }
    if (s->n == s->pause_resume_at) {
        od_kcons_pause(s->c);
        od_kcons_resume(s->c);
    }
}

static void on_assign(void *arg, const rd_kafka_topic_partition_list_t *parts)
{
    cons_t *s = arg;
    (void)parts;
    s->assigns++;
}

static void on_revoke(void *arg, const rd_kafka_topic_partition_list_t *parts)
{
    cons_t *s = arg;
    (void)parts;
    s->revokes++;
}

static const od_kcons_handlers_t handlers = {on_message, on_assign, on_revoke};

static od_kcons_t *cons_new(cons_t *s, const char *group)
{
    char errstr[512];
    s->c = od_kcons_new(loop, brokers, group, topic, &handlers, s, NULL, errstr, sizeof(errstr));
    if (s->c == NULL)
        fprintf(stderr, "od_kcons_new: %s\n", errstr);
    CHECK(s->c != NULL);
    return s->c;
}

typedef struct count_goal {
    cons_t *a, *b;
    int n;
} count_goal_t;

static int got_count(void *arg)
{
    count_goal_t *g = arg;
    return g->a->n + (g->b != NULL ? g->b->n : 0) >= g->n;
}

/* per partition: offsets received by `s` from recs[from..], in arrival order */
static int offsets_of(const cons_t *s, int from, int32_t p, int64_t *out)
{
    int k = 0;
    for (int i = from; i < s->n; i++)
        if (s->recs[i].partition == p)
            out[k++] = s->recs[i].offset;
    return k;
}

static const rec_t *find_rec(const cons_t *s, int32_t p, int64_t offset)
{
    for (int i = 0; i < s->n; i++)
        if (s->recs[i].partition == p && s->recs[i].offset == offset)
            return &s->recs[i];
    return NULL;
}

static cons_t A, B, C;
static int64_t end_off[NPART]; /* messages per partition (fresh topic: offsets 0..end-1) */

static int rebalanced(void *arg)
{
    count_goal_t *g = arg;
    return A.revokes >= 1 && B.assigns >= 1 && od_kcons_assigned(A.c) > 0 && od_kcons_assigned(B.c) > 0 &&
           od_kcons_assigned(A.c) + od_kcons_assigned(B.c) == NPART && A.n + B.n >= g->n;
}

static void test_group(void)
{
    char group[96];
    snprintf(group, sizeof(group), "%s-g1", topic);
    cons_new(&A, group);
    count_goal_t goal = {&A, NULL, NMSG};
    CHECK(run_until(got_count, &goal, 60000) == 0);
    run_for(300); /* nothing more should come */
    CHECK(A.n == NMSG);
    CHECK(A.wrong_partition == 0);
    CHECK(od_kcons_assigned(A.c) == NPART);
    CHECK(A.assigns == 1);
    CHECK(od_kcons_pending(A.c) == NMSG);

    /* each partition: offsets 0..end-1 in order */
    static int64_t offs[NMSG];
    int total = 0;
    for (int p = 0; p < NPART; p++) {
        int k = offsets_of(&A, 0, p, offs);
        for (int i = 0; i < k; i++)
            CHECK(offs[i] == i);
        end_off[p] = k;
        total += k;
        CHECK(k >= 10);
    }
    CHECK(total == NMSG);

    /* Done out of order:
     *   p0: 0 and 2..9 done, 1 not   -> committed 1
     *   p1: all done                  -> committed end
     *   p2: none done                 -> nothing committed
     *   p3: 4,3,2,1,0 (reverse)       -> committed 5 */
    int ndone = 0;
    od_kcons_done(A.c, find_rec(&A, 0, 0)->tok);
    ndone++;
    for (int64_t o = 9; o >= 2; o--, ndone++)
        od_kcons_done(A.c, find_rec(&A, 0, o)->tok);
    for (int64_t o = 0; o < end_off[1]; o++, ndone++)
        od_kcons_done(A.c, find_rec(&A, 1, o)->tok);
    for (int64_t o = 4; o >= 0; o--, ndone++)
        od_kcons_done(A.c, find_rec(&A, 3, o)->tok);
    od_kcons_done(A.c, find_rec(&A, 3, 0)->tok); /* twice: ignored */
    od_ktoken_t stale = find_rec(&A, 0, 1)->tok;
    stale.generation += 7;
    od_kcons_done(A.c, stale); /* wrong generation: ignored */
    CHECK(od_kcons_pending(A.c) == NMSG - ndone);

    run_for(2500); /* auto-commit runs every second */
    int64_t want[NPART] = {1, end_off[1], RD_KAFKA_OFFSET_INVALID, 5}, got[NPART];
    committed(group, got);
    for (int p = 0; p < NPART; p++) {
        if (got[p] != want[p])
            fprintf(stderr, "partition %d: committed %" PRId64 ", want %" PRId64 "\n", p, got[p], want[p]);
        CHECK(got[p] == want[p]);
    }

    /* A second member: partitions move, uncommitted messages come again. */
    od_ktoken_t old_tok = find_rec(&A, 0, 1)->tok;
    int a_from = A.n;
    cons_new(&B, group);
    int64_t start[NPART];
    int redeliver = 0;
    for (int p = 0; p < NPART; p++) {
        start[p] = want[p] == RD_KAFKA_OFFSET_INVALID ? 0 : want[p];
        redeliver += (int)(end_off[p] - start[p]);
    }
    count_goal_t goal2 = {&A, &B, a_from + redeliver};
    CHECK(run_until(rebalanced, &goal2, 60000) == 0);
    run_for(500);
    CHECK(B.n > 0);
    CHECK(A.wrong_partition == 0 && B.wrong_partition == 0);
    /* every partition: exactly start..end-1, in order, from whichever member owns it now */
    for (int p = 0; p < NPART; p++) {
        int ka = offsets_of(&A, a_from, p, offs);
        int kb = 0;
        static int64_t offs_b[NMSG];
        kb = offsets_of(&B, 0, p, offs_b);
        CHECK(ka == 0 || kb == 0);
        int64_t *o = ka > 0 ? offs : offs_b;
        int k = ka > 0 ? ka : kb;
        CHECK(k == end_off[p] - start[p]);
        for (int i = 0; i < k; i++)
            CHECK(o[i] == start[p] + i);
    }
    CHECK(A.n - a_from + B.n == redeliver);
    CHECK(od_kcons_pending(A.c) == A.n - a_from);
    CHECK(od_kcons_pending(B.c) == B.n);
    /* a token of the revoked generation changes nothing */
    od_kcons_done(A.c, old_tok);
    CHECK(od_kcons_pending(A.c) == A.n - a_from);

    od_kcons_destroy(B.c);
    od_kcons_destroy(A.c);
    run_for(200); /* handle close callbacks free them */
}

static void resume_from_timer(uv_timer_t *t)
{
    cons_t *s = t->data;
    s->paused = 0;
    od_kcons_resume(s->c);
    od_kcons_resume(s->c); /* idempotent */
}

static int lag_zero(void *arg)
{
    cons_t *s = arg;
    return od_kcons_lag(s->c) == 0;
}

static void test_pause(void)
{
    char group[96];
    snprintf(group, sizeof(group), "%s-g2", topic);
    C.pause_at = 100;
    C.pause_resume_at = 300;
    cons_new(&C, group);
    count_goal_t g = {&C, NULL, 100};
    CHECK(run_until(got_count, &g, 60000) == 0);
    CHECK(C.paused);
    run_for(1500);
    CHECK(C.n == 100); /* nothing while paused */
    CHECK(C.while_paused == 0);
    CHECK(od_kcons_assigned(C.c) == NPART);

    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &C;
    uv_timer_start(&t, resume_from_timer, 0, 0);
    g.n = NMSG;
    CHECK(run_until(got_count, &g, 60000) == 0);
    run_for(300);
    CHECK(C.n == NMSG);
    CHECK(C.while_paused == 0);
    static int64_t offs[NMSG];
    for (int p = 0; p < NPART; p++) {
        int k = offsets_of(&C, 0, p, offs);
        CHECK(k == end_off[p]);
        for (int i = 0; i < k; i++)
            CHECK(offs[i] == i);
    }
    for (int i = 0; i < C.n; i++)
        od_kcons_done(C.c, C.recs[i].tok);
    CHECK(od_kcons_pending(C.c) == 0);
    /* committed after the next auto-commit, seen by the next statistics (5 s) */
    CHECK(run_until(lag_zero, &C, 20000) == 0);
    od_kcons_destroy(C.c);
    int64_t got[NPART];
    committed(group, got);
    for (int p = 0; p < NPART; p++)
        CHECK(got[p] == end_off[p]);
    uv_close((uv_handle_t *)&t, NULL);
    run_for(200);
}

/* ---------------------------------------------------------------- producer without broker */

static int prod_down(void *arg)
{
    return od_kprod_up(arg) == 0;
}

static void test_producer_down(void)
{
    char errstr[512];
    /* loopback port 1: nothing listens there */
    const char *const extra[] = {"reconnect.backoff.ms", "100", NULL};
    od_kprod_t *p = od_kprod_new(loop, "127.0.0.1:1", "test-down", extra, errstr, sizeof(errstr));
    CHECK(p != NULL);
    static report_t rep[5];
    for (int i = 0; i < 5; i++)
        CHECK(od_kprod_send(p, topic, "k", 1, "v", 1, on_sent, &rep[i]) == 0);
    CHECK(run_until(prod_down, p, 10000) == 0);
    CHECK(od_kprod_inflight(p) == 5);
    od_kprod_destroy(p, 100);
    for (int i = 0; i < 5; i++) {
        CHECK(rep[i].n == 1);
        CHECK(rep[i].err == RD_KAFKA_RESP_ERR__PURGE_QUEUE || rep[i].err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT);
    }
    CHECK(od_metric_value(od_counter("outdial_kafka_errors_total", "client=\"test-down\"", "")) >= 1);
    run_for(100);
}

int main(void)
{
    od_log_init("test_kafka", getenv("OUTDIAL_TEST_LOG") != NULL ? getenv("OUTDIAL_TEST_LOG") : "warn");
    test_tracker();
    test_partitioner_vectors();
    fprintf(stderr, "tracker, partitioner: ok\n");

    brokers = getenv("OUTDIAL_TEST_KAFKA_BROKERS");
    if (brokers == NULL || brokers[0] == '\0') {
        fprintf(stderr, "OUTDIAL_TEST_KAFKA_BROKERS unset: broker tests skipped\n");
        return 77;
    }
    loop = od_malloc(sizeof(*loop));
    CHECK(uv_loop_init(loop) == 0);
    uv_timer_init(loop, &tick);
    uv_timer_start(&tick, on_tick, 50, 50);

    unsigned char rnd[6];
    od_random_bytes(rnd, sizeof(rnd));
    snprintf(topic, sizeof(topic), "od-test-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
    create_topic(topic, NPART);
    fprintf(stderr, "topic %s created\n", topic);

    test_produce();
    fprintf(stderr, "produce: ok\n");
    test_group();
    fprintf(stderr, "group (done prefix, rebalance): ok\n");
    test_pause();
    fprintf(stderr, "pause/resume, lag: ok\n");
    test_producer_down();
    fprintf(stderr, "producer down, purge on destroy: ok\n");

    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(loop) == 0);
    free(loop);
    return 0;
}
