/*
 * PostgreSQL pool on libuv: libpq pipeline mode, one sync per query.
 *
 * Every connection (`conn`) owns one libpq connection, one uv_poll_t on its
 * socket and one uv_timer_t whose meaning depends on the state:
 *
 *   od_pg_new                      PQconnectPoll OK              PREPARE sync OK
 *   ─────────► CONNECTING ───────────────────────► PREPARING ──────────────────► READY
 *                 ▲   │ failed, 5 s timeout             │ PREPARE failed,           │ read/flush error,
 *                 │   ▼                                 │ timeout, I/O error        │ result saying the
 *   backoff timer │ BACKOFF ◄───────────────────────────┴───────────────────────────┤ connection is gone
 *                 └───┘   ▲                                                         │ (seen in the loop)
 *                         └─────── BROKEN (0 ms timer) ◄────────────────────────────┘ (seen in od_pg_query)
 *   any state ── od_pg_close ──► CLOSED
 *
 * Results of a connection come back in the order the commands were sent, so
 * the queries in flight are a FIFO (conn->head .. conn->tail): each query
 * gives its result, a NULL, then PGRES_PIPELINE_SYNC. The PREPAREs sent at
 * connect form one entry of the same FIFO (one result per statement, one
 * sync), so one drain loop serves both.
 */
#include "od/pg.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/log.h"
#include "od/metrics.h"

#define CONNECT_TIMEOUT_MS 5000 /* from PQconnectStart to the PREPARE sync */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

typedef enum {
    CONN_BACKOFF,    /* no PGconn; conn->timer starts the next attempt */
    CONN_CONNECTING, /* PQconnectPoll in progress on conn->poll; conn->timer = connect timeout */
    CONN_PREPARING,  /* pipeline mode; the PREPARE entry is conn->head; conn->timer = connect timeout */
    CONN_READY,      /* serving queries; conn->head..tail = queries in flight; conn->timer idle */
    CONN_BROKEN,     /* failure seen inside od_pg_query; conn->timer (0 ms) tears down from the loop */
    CONN_CLOSED,     /* od_pg_close ran; conn->timer (and maybe a poll) closing */
} conn_state_t;

/* One command group in flight, ended by one sync. */
typedef struct entry {
    struct entry *next;
    od_pg_cb cb;      /* NULL once the callback ran (the entry still waits for its sync) */
    void *arg;
    int prepare;      /* 1: the PREPAREs sent at connect (no callback) */
    int failed;       /* prepare entry: some statement failed */
    int results_left; /* command results still expected before the sync */
} entry_t;

typedef struct conn {
    od_pg_t *pg;
    int idx;
    conn_state_t state;
    PGconn *pgc;       /* NULL in BACKOFF and CLOSED */
    uv_poll_t *poll;   /* heap: freed by its close callback, possibly after a reconnect made a new one */
    int poll_fd;
    int poll_events;   /* events conn->poll watches (-1: unknown, restart it) */
    uv_timer_t timer;
    entry_t *head, *tail;
    int ninflight;     /* queries whose callback has not run yet */
    int kick;          /* libpq may hold unread results in its buffer: pg->idle drains it */
    int up;            /* was READY since the last failure (decides how a failure is logged) */
    int failing;       /* a failure was logged; quieter logs until READY again */
    unsigned gen;      /* bumped when the PGconn goes away: lets callers notice under callbacks */
    unsigned backoff_ms;
    char errbuf[256];  /* BROKEN: why */
} conn_t;

struct od_pg {
    uv_loop_t *loop;
    char *name;
    char *dsn;
    char *options; /* libpq "options" (e.g. "-c statement_timeout=20000"), a default the DSN may override */
    const od_pg_stmt_t *stmts;
    size_t nstmts;
    int nconns;
    conn_t *conns;
    int nready;
    int ninflight;
    int closing;
    int nhandles;      /* libuv handles not yet through their close callback */
    uv_idle_t idle;    /* drains connections with conn->kick set, out of od_pg_query */
    int max_queue;     /* od_pg_query_bounded: most queries in flight per connection (0: no bound) */
    od_metric_t *m_ready, *m_inflight, *m_err_connect, *m_err_query, *m_err_broken, *m_full;
};

static void on_poll(uv_poll_t *poll, int status, int events);
static void conn_connect(conn_t *conn);
static void conn_drain(conn_t *conn);

/* Copies `s` into `buf` without trailing newlines (libpq messages end with one). */
static const char *oneline(const char *s, char *buf, size_t len)
{
    snprintf(buf, len, "%s", s != NULL ? s : "");
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return buf;
}

static void pool_free_if_done(od_pg_t *pg)
{
    if (!pg->closing || pg->nhandles > 0)
        return;
    free(pg->conns);
    free(pg->name);
    free(pg->dsn);
    free(pg->options);
    free(pg);
}

static void on_timer_close(uv_handle_t *h)
{
    conn_t *conn = od_container_of(h, conn_t, timer);
    od_pg_t *pg = conn->pg;
    pg->nhandles--;
    pool_free_if_done(pg);
}

static void on_idle_close(uv_handle_t *h)
{
    od_pg_t *pg = od_container_of(h, od_pg_t, idle);
    pg->nhandles--;
    pool_free_if_done(pg);
}

static void on_poll_close(uv_handle_t *h)
{
    od_pg_t *pg = ((conn_t *)h->data)->pg; /* conns live until the pool is freed */
    free(h);
    pg->nhandles--;
    pool_free_if_done(pg);
}

static void pool_update_ready(od_pg_t *pg)
{
    int n = 0;
    for (int i = 0; i < pg->nconns; i++)
        n += pg->conns[i].state == CONN_READY;
    if (n == pg->nready)
        return;
    if (!pg->closing) {
        if (pg->nready == 0)
            od_info("pg %s: database available (%d/%d connections ready)", pg->name, n, pg->nconns);
        else if (n == 0)
            od_warn("pg %s: no connection ready: queries are refused until one reconnects", pg->name);
    }
    pg->nready = n;
    od_metric_set(pg->m_ready, n);
}

static void inflight_add(conn_t *conn, int d)
{
    conn->ninflight += d;
    conn->pg->ninflight += d;
    od_metric_set(conn->pg->m_inflight, conn->pg->ninflight);
}

/* Watches the socket for `events`. */
static void conn_watch(conn_t *conn, int events)
{
    if (conn->poll_events == events)
        return;
    conn->poll_events = events;
    uv_poll_start(conn->poll, events, on_poll);
}

/* Closes the poll handle. Must run before PQfinish closes its fd: libuv has to
 * stop watching an fd before it is closed (and maybe reused). */
static void conn_poll_close(conn_t *conn)
{
    if (conn->poll == NULL)
        return;
    uv_close((uv_handle_t *)conn->poll, on_poll_close);
    conn->poll = NULL;
    conn->poll_fd = -1;
    conn->poll_events = 0;
}

/* Makes conn->poll watch `fd`, replacing the handle if libpq moved to another socket. */
static int conn_poll_open(conn_t *conn, int fd)
{
    if (conn->poll != NULL && conn->poll_fd == fd)
        return 0;
    conn_poll_close(conn);
    uv_poll_t *poll = od_malloc(sizeof(*poll));
    int r = uv_poll_init(conn->pg->loop, poll, fd);
    if (r != 0) {
        free(poll);
        return r;
    }
    poll->data = conn;
    conn->pg->nhandles++;
    conn->poll = poll;
    conn->poll_fd = fd;
    conn->poll_events = -1;
    return 0;
}

/* Flushes libpq's output; watches for writability while some is left. */
static int conn_flush(conn_t *conn)
{
    int r = PQflush(conn->pgc);
    if (r < 0)
        return -1;
    conn_watch(conn, UV_READABLE | (r > 0 ? UV_WRITABLE : 0));
    return 0;
}

/* Drops the PGconn: poll handle first, then PQfinish (which closes the fd). */
static void conn_drop(conn_t *conn)
{
    uv_timer_stop(&conn->timer);
    conn_poll_close(conn);
    if (conn->pgc != NULL) {
        PQfinish(conn->pgc);
        conn->pgc = NULL;
    }
    conn->kick = 0;
    conn->gen++;
}

/* Fails every query in flight with OD_PG_EUNAVAIL. The list is detached
 * first: a callback may call od_pg_query (another connection) or od_pg_close. */
static void conn_fail_entries(conn_t *conn)
{
    entry_t *e = conn->head;
    conn->head = conn->tail = NULL;
    while (e != NULL) {
        entry_t *next = e->next;
        od_pg_cb cb = e->cb;
        void *arg = e->arg;
        free(e);
        if (cb != NULL) {
            inflight_add(conn, -1);
            cb(arg, OD_PG_EUNAVAIL, NULL);
        }
        e = next;
    }
}

static void on_timer(uv_timer_t *timer);

/* Tears the connection down and schedules a reconnect. Runs only from loop
 * callbacks (or od_pg_new, with nothing in flight), so callbacks it calls
 * never run inside od_pg_query. Logs once per episode, not once per retry. */
static void conn_fail(conn_t *conn, od_metric_t *kind, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void conn_fail(conn_t *conn, od_metric_t *kind, const char *fmt, ...)
{
    od_pg_t *pg = conn->pg;
    char msg[512], line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    oneline(msg, line, sizeof(line));
    od_metric_add(kind, 1);
    if (conn->up)
        od_warn("pg %s: connection %d lost: %s; reconnecting", pg->name, conn->idx, line);
    else if (!conn->failing)
        od_warn("pg %s: connection %d: %s; retrying with backoff", pg->name, conn->idx, line);
    else
        od_debug("pg %s: connection %d: %s", pg->name, conn->idx, line);
    conn->up = 0;
    conn->failing = 1;

    conn_drop(conn);
    conn->state = CONN_BACKOFF;
    pool_update_ready(pg);
    unsigned next = conn->backoff_ms == 0 ? BACKOFF_MIN_MS : OD_MIN(conn->backoff_ms * 2, BACKOFF_MAX_MS);
    conn->backoff_ms = next;
    uint32_t rnd;
    od_random_bytes(&rnd, sizeof(rnd));
    uv_timer_start(&conn->timer, on_timer, next / 2 + rnd % (next / 2 + 1), 0); /* [next/2, next] */

    conn_fail_entries(conn); /* last: callbacks may close the pool */
}

/* Marks the connection broken from inside od_pg_query; the teardown and the
 * EUNAVAIL callbacks run from conn->timer, out of the caller's stack. */
static void conn_break_later(conn_t *conn, const char *what)
{
    char line[256];
    snprintf(conn->errbuf, sizeof(conn->errbuf), "%s: %s", what, oneline(PQerrorMessage(conn->pgc), line, sizeof(line)));
    conn->state = CONN_BROKEN;
    if (conn->poll != NULL) {
        uv_poll_stop(conn->poll);
        conn->poll_events = 0;
    }
    uv_timer_start(&conn->timer, on_timer, 0, 0);
    pool_update_ready(conn->pg);
}

static od_metric_t *fail_kind(conn_t *conn)
{
    return conn->state == CONN_READY ? conn->pg->m_err_broken : conn->pg->m_err_connect;
}

static void conn_set_ready(conn_t *conn)
{
    od_pg_t *pg = conn->pg;
    uv_timer_stop(&conn->timer);
    conn->state = CONN_READY;
    conn->backoff_ms = 0;
    conn->up = 1;
    if (conn->failing)
        od_info("pg %s: connection %d ready again", pg->name, conn->idx);
    else
        od_debug("pg %s: connection %d ready", pg->name, conn->idx);
    conn->failing = 0;
    pool_update_ready(pg);
}

/* Connected: pipeline mode, then every PREPARE in one sync group. */
static void conn_prepare(conn_t *conn)
{
    od_pg_t *pg = conn->pg;
    PGconn *c = conn->pgc;
    if (PQsetnonblocking(c, 1) != 0 || PQenterPipelineMode(c) != 1) {
        conn_fail(conn, pg->m_err_connect, "entering pipeline mode: %s", PQerrorMessage(c));
        return;
    }
    for (size_t i = 0; i < pg->nstmts; i++)
        if (!PQsendPrepare(c, pg->stmts[i].name, pg->stmts[i].sql, 0, NULL)) {
            conn_fail(conn, pg->m_err_connect, "sending PREPARE %s: %s", pg->stmts[i].name, PQerrorMessage(c));
            return;
        }
    if (!PQpipelineSync(c)) {
        conn_fail(conn, pg->m_err_connect, "sending sync: %s", PQerrorMessage(c));
        return;
    }
    entry_t *e = od_calloc(1, sizeof(*e));
    e->prepare = 1;
    e->results_left = (int)pg->nstmts;
    conn->head = conn->tail = e;
    conn->state = CONN_PREPARING;
    if (conn_flush(conn) != 0)
        conn_fail(conn, pg->m_err_connect, "sending PREPARE: %s", PQerrorMessage(c));
}

/* Waits for the socket as PQconnectPoll asked. The fd can change between
 * calls (libpq tries the next address, or retries without SSL), and a new
 * socket can get the old number, which epoll forgot when it was closed:
 * uv_poll_start always re-registers, so it is called at every step. */
static void conn_connect_wait(conn_t *conn, PostgresPollingStatusType st)
{
    int fd = PQsocket(conn->pgc);
    int r = fd < 0 ? UV_EBADF : conn_poll_open(conn, fd);
    if (r != 0) {
        conn_fail(conn, conn->pg->m_err_connect, "watching the socket: %s", uv_strerror(r));
        return;
    }
    conn->poll_events = st == PGRES_POLLING_READING ? UV_READABLE : UV_WRITABLE;
    uv_poll_start(conn->poll, conn->poll_events, on_poll);
}

static void conn_connect_step(conn_t *conn)
{
    PostgresPollingStatusType st = PQconnectPoll(conn->pgc);
    switch (st) {
    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        conn_connect_wait(conn, st);
        break;
    case PGRES_POLLING_OK:
        conn_prepare(conn);
        break;
    default:
        conn_fail(conn, conn->pg->m_err_connect, "connect failed: %s", PQerrorMessage(conn->pgc));
        break;
    }
}

static void on_notice(void *arg, const char *message)
{
    conn_t *conn = arg;
    char line[512];
    od_info("pg %s: server notice: %s", conn->pg->name, oneline(message, line, sizeof(line)));
}

static void conn_connect(conn_t *conn)
{
    od_pg_t *pg = conn->pg;
    /* Keywords before "dbname" are defaults that the DSN (expanded in place
     * of dbname, URI or key=value) overrides. */
    static const char *const keywords[] = {"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                                           "fallback_application_name", "options", "dbname", NULL};
    const char *values[] = {"1", "5", "2", "3", pg->name, pg->options, pg->dsn, NULL};
    conn->pgc = PQconnectStartParams(keywords, values, 1);
    if (conn->pgc == NULL) {
        fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory in PQconnectStartParams\"}\n");
        abort();
    }
    conn->state = CONN_CONNECTING;
    if (PQstatus(conn->pgc) == CONNECTION_BAD) {
        conn_fail(conn, pg->m_err_connect, "connect failed: %s", PQerrorMessage(conn->pgc));
        return;
    }
    PQsetNoticeProcessor(conn->pgc, on_notice, conn);
    uv_timer_start(&conn->timer, on_timer, CONNECT_TIMEOUT_MS, 0);
    /* libpq: act as if PQconnectPoll had returned PGRES_POLLING_WRITING */
    conn_connect_wait(conn, PGRES_POLLING_WRITING);
}

static void on_timer(uv_timer_t *timer)
{
    conn_t *conn = od_container_of(timer, conn_t, timer);
    switch (conn->state) {
    case CONN_BACKOFF:
        conn_connect(conn);
        break;
    case CONN_CONNECTING:
    case CONN_PREPARING:
        conn_fail(conn, conn->pg->m_err_connect, "connect timed out after %d ms", CONNECT_TIMEOUT_MS);
        break;
    case CONN_BROKEN:
        conn_fail(conn, conn->pg->m_err_broken, "%s", conn->errbuf);
        break;
    default:
        break;
    }
}

/* 1 if an error result says the connection itself is gone: produced by libpq
 * (no SQLSTATE), connection exceptions (08) or operator intervention such as
 * pg_terminate_backend or a shutdown (57P01..). Not 57014 (query canceled). */
static int result_conn_lost(PGconn *c, const PGresult *res)
{
    if (PQstatus(c) == CONNECTION_BAD)
        return 1;
    const char *ss = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    return ss == NULL || strncmp(ss, "08", 2) == 0 || strncmp(ss, "57P", 3) == 0;
}

/* Calls the query's callback once; afterwards the entry only waits for its sync. */
static void entry_answer(conn_t *conn, entry_t *e, int status, PGresult *res)
{
    od_pg_cb cb = e->cb;
    e->cb = NULL;
    inflight_add(conn, -1);
    cb(e->arg, status, res);
}

/* A command result for the PREPARE entry. */
static void prepare_result(conn_t *conn, entry_t *e, PGresult *res)
{
    od_pg_t *pg = conn->pg;
    const od_pg_stmt_t *stmt = &pg->stmts[pg->nstmts - (size_t)e->results_left - 1];
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK)
        return;
    e->failed = 1;
    if (st == PGRES_PIPELINE_ABORTED) /* follows the failing one */
        return;
    /* a programming error in the SQL text: loud the first time, then quiet while retrying */
    char line[512];
    od_log(conn->failing ? OD_LOG_DEBUG : OD_LOG_ERROR, NULL,
           "pg %s: PREPARE %s failed: %s (SQLSTATE %s); connection kept out of service", pg->name, stmt->name,
           oneline(PQresultErrorMessage(res), line, sizeof(line)), od_pg_sqlstate(res));
}

/* Takes every result libpq can give without blocking. Never calls
 * PQgetResult when nothing is in flight or when PQisBusy says it would block.
 * Returns at once if a callback changed the connection (close, failure). */
static void conn_drain(conn_t *conn)
{
    od_pg_t *pg = conn->pg;
    PGconn *c = conn->pgc;
    unsigned gen = conn->gen;
    int nulls = 0;
    conn->kick = 0;
    while (conn->head != NULL && !PQisBusy(c)) {
        PGresult *res = PQgetResult(c);
        if (res == NULL) {
            /* ends one command's results (also the harmless one libpq gives
             * when it moves to the next queued command); twice in a row means
             * nothing more is there now */
            if (++nulls > 1)
                break;
            continue;
        }
        nulls = 0;
        entry_t *e = conn->head;
        ExecStatusType st = PQresultStatus(res);

        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            conn->head = e->next;
            if (conn->head == NULL)
                conn->tail = NULL;
            if (e->prepare) {
                int failed = e->failed || e->results_left != 0;
                free(e);
                if (failed) {
                    conn_fail(conn, pg->m_err_connect, "PREPARE failed");
                    return;
                }
                conn_set_ready(conn);
                continue;
            }
            if (e->cb != NULL) { /* sync without a result: cannot happen; never lose a callback */
                entry_answer(conn, e, OD_PG_EUNAVAIL, NULL);
                free(e);
                if (conn->gen != gen || conn->state != CONN_READY)
                    return;
                conn_fail(conn, pg->m_err_broken, "protocol out of step: sync without a result");
                return;
            }
            free(e);
            continue;
        }

        if (e->results_left <= 0) {
            char line[256];
            snprintf(line, sizeof(line), "protocol out of step: unexpected %s", PQresStatus(st));
            PQclear(res);
            conn_fail(conn, fail_kind(conn), "%s", line);
            return;
        }
        e->results_left--;
        if (e->prepare) {
            prepare_result(conn, e, res);
            PQclear(res);
            continue;
        }

        int status, lost = 0;
        switch (st) {
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
            status = OD_PG_OK;
            break;
        case PGRES_FATAL_ERROR:
        case PGRES_NONFATAL_ERROR:
        case PGRES_EMPTY_QUERY:
            lost = result_conn_lost(c, res);
            status = lost ? OD_PG_EUNAVAIL : OD_PG_EQUERY;
            break;
        case PGRES_PIPELINE_ABORTED:
            /* not executed (an earlier command of the sync group failed);
             * with one sync per query it does not happen: retriable */
            status = OD_PG_EUNAVAIL;
            break;
        default: /* COPY, BAD_RESPONSE, SINGLE_TUPLE: a state this pool cannot follow */
            lost = 1;
            status = OD_PG_EUNAVAIL;
            break;
        }
        char why[256] = "";
        if (lost)
            oneline(PQresultErrorMessage(res), why, sizeof(why));
        if (status == OD_PG_EQUERY)
            od_metric_add(pg->m_err_query, 1);
        entry_answer(conn, e, status, status == OD_PG_EUNAVAIL ? NULL : res);
        PQclear(res);
        if (conn->gen != gen || conn->state != CONN_READY)
            return;
        if (lost) {
            conn_fail(conn, pg->m_err_broken, "%s", why[0] ? why : PQresStatus(st));
            return;
        }
    }
    if (PQstatus(c) == CONNECTION_BAD)
        conn_fail(conn, fail_kind(conn), "%s", PQerrorMessage(c));
}

static void on_poll(uv_poll_t *poll, int status, int events)
{
    conn_t *conn = poll->data;
    assert(conn->poll == poll); /* a closing handle never calls back */

    if (conn->state == CONN_CONNECTING) {
        conn_connect_step(conn); /* an error on the fd shows in PQconnectPoll */
        return;
    }
    if (conn->state != CONN_PREPARING && conn->state != CONN_READY)
        return;
    if (status < 0) {
        /* libuv reports POLLERR/POLLHUP as UV_EBADF and stops the handle. The
         * server may have said why (57P01...) and answered some queries
         * first: let libpq read what is there, then fail with its words. */
        unsigned gen = conn->gen;
        if (PQconsumeInput(conn->pgc))
            conn_drain(conn);
        if (conn->gen != gen || (conn->state != CONN_PREPARING && conn->state != CONN_READY))
            return;
        const char *why = PQerrorMessage(conn->pgc);
        conn_fail(conn, fail_kind(conn), "socket: %s", *why ? why : uv_strerror(status));
        return;
    }
    if ((events & UV_WRITABLE) && conn_flush(conn) != 0) {
        conn_fail(conn, fail_kind(conn), "write: %s", PQerrorMessage(conn->pgc));
        return;
    }
    /* also after a writable event: PQflush may read input to avoid a deadlock */
    if (!PQconsumeInput(conn->pgc)) {
        conn_fail(conn, fail_kind(conn), "read: %s", PQerrorMessage(conn->pgc));
        return;
    }
    conn_drain(conn);
}

/* Sending may have made libpq read results into its buffer (PQflush reads
 * when the socket is full); the socket then stays quiet, so drain here. */
static void on_idle(uv_idle_t *idle)
{
    od_pg_t *pg = od_container_of(idle, od_pg_t, idle);
    uv_idle_stop(idle);
    for (int i = 0; i < pg->nconns && !pg->closing; i++) {
        conn_t *conn = &pg->conns[i];
        if (conn->kick && conn->state == CONN_READY)
            conn_drain(conn);
    }
}

od_pg_t *od_pg_new(uv_loop_t *loop, const char *name, const char *dsn, int nconns, const od_pg_stmt_t *stmts,
                   size_t nstmts)
{
    return od_pg_new_opts(loop, name, dsn, NULL, nconns, stmts, nstmts);
}

od_pg_t *od_pg_new_opts(uv_loop_t *loop, const char *name, const char *dsn, const char *options, int nconns,
                        const od_pg_stmt_t *stmts, size_t nstmts)
{
    assert(loop != NULL && name != NULL && dsn != NULL && nconns >= 1 && (stmts != NULL || nstmts == 0));
    od_pg_t *pg = od_calloc(1, sizeof(*pg));
    pg->loop = loop;
    pg->name = od_strdup(name);
    pg->dsn = od_strdup(dsn);
    pg->options = options != NULL ? od_strdup(options) : NULL;
    pg->stmts = stmts;
    pg->nstmts = nstmts;
    pg->nconns = nconns;
    pg->conns = od_calloc((size_t)nconns, sizeof(conn_t));

    char labels[256];
    snprintf(labels, sizeof(labels), "pool=\"%s\"", name);
    pg->m_ready = od_gauge("outdial_pg_connections_ready", labels, "PostgreSQL connections ready for queries");
    pg->m_inflight = od_gauge("outdial_pg_queries_inflight", labels, "PostgreSQL queries sent and not yet answered");
    static const char err_help[] = "PostgreSQL failures: connect (incl. PREPARE), query (SQL error), broken "
                                   "(connection lost while ready)";
    snprintf(labels, sizeof(labels), "pool=\"%s\",kind=\"connect\"", name);
    pg->m_err_connect = od_counter("outdial_pg_errors_total", labels, err_help);
    snprintf(labels, sizeof(labels), "pool=\"%s\",kind=\"query\"", name);
    pg->m_err_query = od_counter("outdial_pg_errors_total", labels, err_help);
    snprintf(labels, sizeof(labels), "pool=\"%s\",kind=\"broken\"", name);
    pg->m_err_broken = od_counter("outdial_pg_errors_total", labels, err_help);
    snprintf(labels, sizeof(labels), "pool=\"%s\"", name);
    pg->m_full = od_counter("outdial_pg_queue_full_total", labels,
                            "queries refused because every connection had its most queries in flight");
    od_metric_set(pg->m_ready, 0);
    od_metric_set(pg->m_inflight, 0);

    uv_idle_init(loop, &pg->idle);
    pg->nhandles++;
    for (int i = 0; i < nconns; i++) {
        conn_t *conn = &pg->conns[i];
        conn->pg = pg;
        conn->idx = i;
        conn->poll_fd = -1;
        conn->state = CONN_BACKOFF;
        uv_timer_init(loop, &conn->timer);
        pg->nhandles++;
    }
    for (int i = 0; i < nconns; i++)
        conn_connect(&pg->conns[i]);
    return pg;
}

int od_pg_query(od_pg_t *pg, const char *stmt, int nparams, const char *const *values, od_pg_cb cb, void *arg)
{
    assert(stmt != NULL && cb != NULL && nparams >= 0 && nparams <= 65535 && (values != NULL || nparams == 0));
    if (pg->closing)
        return -1;
    for (;;) {
        conn_t *conn = NULL;
        for (int i = 0; i < pg->nconns; i++) {
            conn_t *cand = &pg->conns[i];
            if (cand->state == CONN_READY && (conn == NULL || cand->ninflight < conn->ninflight))
                conn = cand;
        }
        if (conn == NULL)
            return -1;
        PGconn *c = conn->pgc;
        if (!PQsendQueryPrepared(c, stmt, nparams, values, NULL, NULL, 0)) {
            if (PQstatus(c) != CONNECTION_BAD) { /* refused for this query alone; the connection is fine */
                char line[256];
                od_error("pg %s: cannot send %s: %s", pg->name, stmt, oneline(PQerrorMessage(c), line, sizeof(line)));
                return -1;
            }
            conn_break_later(conn, "send");
            continue; /* nothing of this query is in flight: try another connection */
        }
        if (!PQpipelineSync(c)) {
            /* without its sync the query is rolled back with the connection */
            conn_break_later(conn, "send");
            continue;
        }
        entry_t *e = od_calloc(1, sizeof(*e));
        e->cb = cb;
        e->arg = arg;
        e->results_left = 1;
        if (conn->tail != NULL)
            conn->tail->next = e;
        else
            conn->head = e;
        conn->tail = e;
        inflight_add(conn, 1);
        if (conn_flush(conn) != 0) {
            conn_break_later(conn, "write"); /* the entry gets EUNAVAIL from the loop */
            return 0;
        }
        conn->kick = 1;
        uv_idle_start(&pg->idle, on_idle);
        return 0;
    }
}

void od_pg_set_max_queue(od_pg_t *pg, int per_conn)
{
    assert(per_conn >= 0);
    pg->max_queue = per_conn;
}

int od_pg_query_bounded(od_pg_t *pg, const char *stmt, int nparams, const char *const *values, od_pg_cb cb,
                        void *arg)
{
    if (pg->max_queue > 0 && !pg->closing) {
        int ready = 0, room = 0;
        for (int i = 0; i < pg->nconns; i++) {
            const conn_t *conn = &pg->conns[i];
            ready += conn->state == CONN_READY;
            room += conn->state == CONN_READY && conn->ninflight < pg->max_queue;
        }
        if (ready > 0 && room == 0) {
            od_metric_add(pg->m_full, 1);
            return OD_PG_EFULL;
        }
    }
    return od_pg_query(pg, stmt, nparams, values, cb, arg);
}

int od_pg_ready(const od_pg_t *pg)
{
    return pg->nready;
}

int od_pg_inflight(const od_pg_t *pg)
{
    return pg->ninflight;
}

void od_pg_close(od_pg_t *pg)
{
    assert(!pg->closing);
    pg->closing = 1;
    uv_close((uv_handle_t *)&pg->idle, on_idle_close);
    for (int i = 0; i < pg->nconns; i++) {
        conn_t *conn = &pg->conns[i];
        conn_drop(conn);
        conn->state = CONN_CLOSED;
        uv_close((uv_handle_t *)&conn->timer, on_timer_close);
    }
    pool_update_ready(pg);
    /* callbacks last: everything they can see is already closed */
    for (int i = 0; i < pg->nconns; i++)
        conn_fail_entries(&pg->conns[i]);
}

const char *od_pg_sqlstate(const PGresult *res)
{
    const char *s = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s != NULL ? s : "";
}

od_pg_err_kind_t od_pg_error_kind(const PGresult *res)
{
    const char *s = od_pg_sqlstate(res);
    if (strncmp(s, "22", 2) == 0 || strncmp(s, "23", 2) == 0)
        return OD_PG_ERR_INPUT;
    if (s[0] == '\0' || strncmp(s, "08", 2) == 0 || strncmp(s, "40", 2) == 0 || strncmp(s, "53", 2) == 0 ||
        strncmp(s, "57", 2) == 0 || strncmp(s, "58", 2) == 0 || strcmp(s, "55P03") == 0)
        return OD_PG_ERR_RETRIABLE;
    return OD_PG_ERR_BUG;
}

const char *od_pg_errmsg(const PGresult *res)
{
    if (res == NULL)
        return "";
    const char *s = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    if (s == NULL) /* errors made by libpq itself have only the full message */
        s = PQresultErrorMessage(res);
    return s != NULL ? s : "";
}
