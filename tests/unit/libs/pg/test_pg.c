/*
 * od_pg against a real PostgreSQL (OUTDIAL_TEST_PG_DSN; exits 77 when unset).
 * Every test runs on its own loop and ends with uv_loop_close() == 0.
 * `test_pg NAME` runs one test; no argument runs them all.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "od/log.h"
#include "od/metrics.h"
#include "od/pg.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);                                   \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

static const char *dsn;

static const od_pg_stmt_t stmts[] = {
    {"seq", "SELECT $1::int AS seq, pg_backend_pid() AS pid"},
    {"div", "SELECT 1 / $1::int AS q, pg_backend_pid() AS pid"},
    {"pid", "SELECT pg_backend_pid() AS pid"},
    {"sleep", "SELECT pg_sleep($1::float8)"},
    {"appname", "SELECT current_setting('application_name')"},
    {"len", "SELECT length($1::text)"},
};

/* ---- running the loop until a condition holds ---- */

typedef struct {
    int (*pred)(void *);
    void *arg;
    int left_ms;
    int met;
} waiter_t;

static void on_wait_tick(uv_timer_t *t)
{
    waiter_t *w = t->data;
    w->left_ms -= 10;
    if ((w->met = w->pred(w->arg)) || w->left_ms <= 0)
        uv_stop(t->loop);
}

static void on_close_noop(uv_handle_t *h)
{
    (void)h;
}

/* Runs `loop` until pred(arg) or `timeout_ms`; returns pred's last value. */
static int run_until(uv_loop_t *loop, int (*pred)(void *), void *arg, int timeout_ms)
{
    waiter_t w = {pred, arg, timeout_ms, pred(arg)};
    if (w.met)
        return 1;
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &w;
    uv_timer_start(&t, on_wait_tick, 10, 10);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, on_close_noop);
    uv_run(loop, UV_RUN_NOWAIT);
    return w.met;
}

static int all_ready(void *arg)
{
    od_pg_t *pg = arg;
    return od_pg_ready(pg) == 2;
}

static int always_false(void *arg)
{
    (void)arg;
    return 0;
}

/* Closes the pool (if still open), then the loop must drain and close. */
static void finish(uv_loop_t *loop, od_pg_t *pg)
{
    if (pg != NULL)
        od_pg_close(pg);
    CHECK(uv_run(loop, UV_RUN_DEFAULT) == 0);
    CHECK(uv_loop_close(loop) == 0);
}

/* ---- 1000 queries on 2 connections, SQL errors in the stream ---- */

#define NSTREAM 1000

typedef struct {
    int answered, ok, err;
    int pids[2];
    int last_seq[2];
    int order_errors;
    int bad_error;
} stream_t;

typedef struct {
    stream_t *st;
    int i;
} stream_q_t;

static void on_stream(void *arg, int status, PGresult *res)
{
    stream_q_t *q = arg;
    stream_t *st = q->st;
    st->answered++;
    if (q->i % 100 == 50) { /* division by zero */
        st->err++;
        if (status != OD_PG_EQUERY || strcmp(od_pg_sqlstate(res), "22012") != 0 ||
            strcmp(od_pg_errmsg(res), "division by zero") != 0)
            st->bad_error++;
        return;
    }
    if (status != OD_PG_OK || PQntuples(res) != 1) {
        st->bad_error++;
        return;
    }
    st->ok++;
    int seq = atoi(PQgetvalue(res, 0, 0)), pid = atoi(PQgetvalue(res, 0, 1));
    int k;
    for (k = 0; k < 2; k++)
        if (st->pids[k] == pid || st->pids[k] == 0)
            break;
    CHECK(k < 2); /* at most two backends */
    st->pids[k] = pid;
    if (seq <= st->last_seq[k])
        st->order_errors++;
    st->last_seq[k] = seq;
}

typedef struct {
    int done;
    char text[128];
    int status;
} one_t;

static void on_one(void *arg, int status, PGresult *res)
{
    one_t *o = arg;
    o->done++;
    o->status = status;
    if (status == OD_PG_OK && PQntuples(res) == 1)
        snprintf(o->text, sizeof(o->text), "%s", PQgetvalue(res, 0, 0));
}

static int one_done(void *arg)
{
    return ((one_t *)arg)->done > 0;
}

static int stream_done(void *arg)
{
    return ((stream_t *)arg)->answered == NSTREAM;
}

static void test_stream(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    od_pg_t *pg = od_pg_new(&loop, "t_stream", dsn, 2, stmts, sizeof(stmts) / sizeof(stmts[0]));
    CHECK(run_until(&loop, all_ready, pg, 5000));

    static stream_q_t qs[NSTREAM];
    stream_t st = {0};
    st.last_seq[0] = st.last_seq[1] = -1;
    for (int i = 0; i < NSTREAM; i++) {
        char v[16];
        snprintf(v, sizeof(v), "%d", i % 100 == 50 ? 0 : i);
        const char *vals[] = {v};
        qs[i] = (stream_q_t){&st, i};
        CHECK(od_pg_query(pg, i % 100 == 50 ? "div" : "seq", 1, vals, on_stream, &qs[i]) == 0);
    }
    CHECK(od_pg_inflight(pg) == NSTREAM);
    CHECK(st.answered == 0); /* never called back from inside od_pg_query */
    CHECK(run_until(&loop, stream_done, &st, 10000));
    CHECK(st.ok == NSTREAM - NSTREAM / 100 && st.err == NSTREAM / 100);
    CHECK(st.bad_error == 0 && st.order_errors == 0);
    CHECK(st.pids[0] != 0 && st.pids[1] != 0); /* both connections served */
    CHECK(od_pg_inflight(pg) == 0);
    CHECK(od_metric_value(od_counter("outdial_pg_errors_total", "pool=\"t_stream\",kind=\"query\"", NULL)) ==
          NSTREAM / 100);

    /* the pool name is the default application_name (the DSN may override it) */
    one_t o = {0};
    CHECK(od_pg_query(pg, "appname", 0, NULL, on_one, &o) == 0);
    CHECK(run_until(&loop, one_done, &o, 5000) && o.status == OD_PG_OK);
    if (strstr(dsn, "application_name") == NULL)
        CHECK(strcmp(o.text, "t_stream") == 0);
    else /* what the DSN sets wins over the pool's defaults */
        CHECK(strcmp(o.text, "t_stream") != 0);

    /* unknown statement: an SQL error, not a broken connection */
    o = (one_t){0};
    CHECK(od_pg_query(pg, "nope", 0, NULL, on_one, &o) == 0);
    CHECK(run_until(&loop, one_done, &o, 5000) && o.status == OD_PG_EQUERY);
    CHECK(od_pg_ready(pg) == 2);
    finish(&loop, pg);
    printf("ok stream\n");
}

/* ---- big parameters: PQflush returns 1, the pool waits for writability ---- */

#define NBIG 16
#define BIGLEN (1 << 20)

typedef struct {
    int answered, good;
} big_t;

static void on_big(void *arg, int status, PGresult *res)
{
    big_t *b = arg;
    b->answered++;
    if (status == OD_PG_OK && atoi(PQgetvalue(res, 0, 0)) == BIGLEN)
        b->good++;
}

static int big_done(void *arg)
{
    return ((big_t *)arg)->answered == NBIG;
}

static void test_big(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    od_pg_t *pg = od_pg_new(&loop, "t_big", dsn, 2, stmts, sizeof(stmts) / sizeof(stmts[0]));
    CHECK(run_until(&loop, all_ready, pg, 5000));
    char *v = malloc(BIGLEN + 1);
    memset(v, 'x', BIGLEN);
    v[BIGLEN] = '\0';
    big_t b = {0};
    for (int i = 0; i < NBIG; i++) {
        const char *vals[] = {v};
        CHECK(od_pg_query(pg, "len", 1, vals, on_big, &b) == 0);
    }
    free(v); /* parameters are copied */
    CHECK(run_until(&loop, big_done, &b, 20000));
    CHECK(b.answered == NBIG && b.good == NBIG);
    finish(&loop, pg);
    printf("ok big\n");
}

/* ---- backends killed by pg_terminate_backend ---- */

typedef struct {
    int answered, unavail, other;
} term_t;

static void on_term(void *arg, int status, PGresult *res)
{
    term_t *t = arg;
    t->answered++;
    if (status == OD_PG_EUNAVAIL && res == NULL)
        t->unavail++;
    else
        t->other++;
}

typedef struct {
    int pids[2];
    int killed;
} killer_t;

static void on_kill(uv_timer_t *timer)
{
    killer_t *k = timer->data;
    const char *kw[] = {"dbname", NULL}, *val[] = {dsn, NULL};
    PGconn *c = PQconnectdbParams(kw, val, 1);
    CHECK(PQstatus(c) == CONNECTION_OK);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM unnest('{%d,%d}'::int[]) pid",
             k->pids[0], k->pids[1]);
    PGresult *res = PQexec(c, sql);
    CHECK(PQresultStatus(res) == PGRES_TUPLES_OK);
    k->killed = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
}

static int term_done(void *arg)
{
    return ((term_t *)arg)->answered == 20;
}

static int broken_4(void *arg)
{
    return od_metric_value(arg) == 4;
}

static void test_terminate(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    od_pg_t *pg = od_pg_new(&loop, "t_term", dsn, 2, stmts, sizeof(stmts) / sizeof(stmts[0]));
    CHECK(run_until(&loop, all_ready, pg, 5000));

    /* with nothing in flight the first query goes to one connection, the second to the other */
    killer_t k = {{0, 0}, 0};
    one_t o[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++)
        CHECK(od_pg_query(pg, "pid", 0, NULL, on_one, &o[i]) == 0);
    CHECK(run_until(&loop, one_done, &o[0], 5000) && run_until(&loop, one_done, &o[1], 5000));
    k.pids[0] = atoi(o[0].text);
    k.pids[1] = atoi(o[1].text);
    CHECK(k.pids[0] != 0 && k.pids[1] != 0 && k.pids[0] != k.pids[1]);

    term_t t = {0};
    for (int i = 0; i < 20; i++) {
        const char *vals[] = {"0.3"};
        CHECK(od_pg_query(pg, i < 10 ? "sleep" : "pid", i < 10 ? 1 : 0, vals, on_term, &t) == 0);
    }
    uv_timer_t killer;
    uv_timer_init(&loop, &killer);
    killer.data = &k;
    uv_timer_start(&killer, on_kill, 100, 0);
    CHECK(run_until(&loop, term_done, &t, 5000));
    CHECK(k.killed == 2);
    CHECK(t.unavail == 20 && t.other == 0);
    CHECK(od_pg_inflight(pg) == 0);

    /* reconnects (100 ms backoff) and serves again, from new backends */
    CHECK(run_until(&loop, all_ready, pg, 5000));
    one_t again = {0};
    CHECK(od_pg_query(pg, "pid", 0, NULL, on_one, &again) == 0);
    CHECK(run_until(&loop, one_done, &again, 5000) && again.status == OD_PG_OK);
    int pid = atoi(again.text);
    CHECK(pid != 0 && pid != k.pids[0] && pid != k.pids[1]);
    od_metric_t *broken = od_counter("outdial_pg_errors_total", "pool=\"t_term\",kind=\"broken\"", NULL);
    CHECK(od_metric_value(broken) == 2);

    /* idle connections killed: only the socket tells; the pool notices and reconnects */
    one_t p2[2] = {{0}, {0}};
    for (int i = 0; i < 2; i++)
        CHECK(od_pg_query(pg, "pid", 0, NULL, on_one, &p2[i]) == 0);
    CHECK(run_until(&loop, one_done, &p2[0], 5000) && run_until(&loop, one_done, &p2[1], 5000));
    k.pids[0] = atoi(p2[0].text);
    k.pids[1] = atoi(p2[1].text);
    k.killed = 0;
    on_kill(&killer);
    CHECK(k.killed == 2);
    CHECK(run_until(&loop, broken_4, broken, 5000));
    CHECK(run_until(&loop, all_ready, pg, 5000));
    uv_close((uv_handle_t *)&killer, on_close_noop);
    finish(&loop, pg);
    printf("ok terminate\n");
}

/* ---- no server: od_pg_query fails at once and never calls back ---- */

static void on_never(void *arg, int status, PGresult *res)
{
    (void)status;
    (void)res;
    ++*(int *)arg;
}

static void test_noserver(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    od_pg_t *pg = od_pg_new(&loop, "t_nosrv", "host=127.0.0.1 port=1 user=outdial dbname=postgres connect_timeout=2", 2,
                            stmts, sizeof(stmts) / sizeof(stmts[0]));
    int calls = 0;
    CHECK(od_pg_query(pg, "pid", 0, NULL, on_never, &calls) == -1);
    run_until(&loop, always_false, NULL, 700);
    CHECK(od_pg_ready(pg) == 0);
    CHECK(od_pg_query(pg, "pid", 0, NULL, on_never, &calls) == -1);
    /* first attempts plus at least one retry each (100 ms backoff, doubling) */
    CHECK(od_metric_value(od_counter("outdial_pg_errors_total", "pool=\"t_nosrv\",kind=\"connect\"", NULL)) >= 4);
    finish(&loop, pg);
    CHECK(calls == 0);
    printf("ok noserver\n");
}

/* ---- a PREPARE that fails keeps the connections out of service ---- */

static void test_bad_prepare(void)
{
    static const od_pg_stmt_t bad[] = {{"good", "SELECT 1"}, {"bad", "SELEC 1"}, {"after", "SELECT 2"}};
    uv_loop_t loop;
    uv_loop_init(&loop);
    od_pg_t *pg = od_pg_new(&loop, "t_badprep", dsn, 2, bad, 3);
    run_until(&loop, always_false, NULL, 500);
    CHECK(od_pg_ready(pg) == 0);
    int calls = 0;
    CHECK(od_pg_query(pg, "good", 0, NULL, on_never, &calls) == -1);
    CHECK(od_metric_value(od_counter("outdial_pg_errors_total", "pool=\"t_badprep\",kind=\"connect\"", NULL)) >= 4);
    finish(&loop, pg);
    CHECK(calls == 0);
    printf("ok bad_prepare\n");
}

/* ---- closing with queries in flight ---- */

static void test_close_inflight(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    od_pg_t *pg = od_pg_new(&loop, "t_close", dsn, 2, stmts, sizeof(stmts) / sizeof(stmts[0]));
    CHECK(run_until(&loop, all_ready, pg, 5000));
    term_t t = {0};
    for (int i = 0; i < 200; i++) {
        const char *vals[] = {"1"};
        CHECK(od_pg_query(pg, "seq", 1, vals, on_term, &t) == 0);
    }
    od_pg_close(pg);
    CHECK(t.answered == 200 && t.unavail == 200);
    finish(&loop, NULL);
    printf("ok close_inflight\n");
}

/* od_pg_close from a query callback, in the middle of a batch of results */
typedef struct {
    od_pg_t *pg;
    int answered, ok, unavail, closed, refused;
} cfc_t;

static void on_cfc(void *arg, int status, PGresult *res)
{
    cfc_t *c = arg;
    (void)res;
    c->answered++;
    c->ok += status == OD_PG_OK;
    c->unavail += status == OD_PG_EUNAVAIL;
    if (c->answered == 10) {
        od_pg_close(c->pg);
        c->closed = 1;
    }
    if (c->closed && od_pg_query(c->pg, "pid", 0, NULL, on_never, &c->refused) != -1)
        c->refused = 1000;
}

static void test_close_from_callback(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    cfc_t c = {0};
    c.pg = od_pg_new(&loop, "t_cfc", dsn, 2, stmts, sizeof(stmts) / sizeof(stmts[0]));
    CHECK(run_until(&loop, all_ready, c.pg, 5000));
    for (int i = 0; i < 100; i++) {
        const char *vals[] = {"1"};
        CHECK(od_pg_query(c.pg, "seq", 1, vals, on_cfc, &c) == 0);
    }
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0); /* the pool closed itself: nothing left */
    CHECK(c.answered == 100 && c.ok >= 10 && c.ok + c.unavail == 100 && c.refused == 0);
    CHECK(uv_loop_close(&loop) == 0);
    printf("ok close_from_callback\n");
}

int main(int argc, char **argv)
{
    dsn = getenv("OUTDIAL_TEST_PG_DSN");
    if (dsn == NULL || *dsn == '\0') {
        printf("SKIP: OUTDIAL_TEST_PG_DSN is not set\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    alarm(100);
    od_log_init("test_pg", getenv("OUTDIAL_LOG_LEVEL"));
    static const struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"stream", test_stream},
        {"big", test_big},
        {"terminate", test_terminate},
        {"noserver", test_noserver},
        {"bad_prepare", test_bad_prepare},
        {"close_inflight", test_close_inflight},
        {"close_from_callback", test_close_from_callback},
    };
    int ran = 0;
    for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
        if (argc < 2 || strcmp(argv[1], tests[i].name) == 0) {
            tests[i].fn();
            ran++;
        }
    CHECK(ran > 0);
    return 0;
}
