/*
 * Asynchronous PostgreSQL client on libuv: a small pool of connections in
 * libpq pipeline mode, each statement prepared on every connection at
 * connect, one sync per query (so one failing query never aborts another),
 * reconnect with exponential backoff.
 *
 * Threading: everything runs on the loop thread that created the pool.
 *
 * Query life: od_pg_query() either fails at once (returns -1, callback never
 * called: no connection is up) or the callback is called exactly once, later,
 * from the loop, with:
 *   - OD_PG_OK and the result (PGRES_TUPLES_OK / PGRES_COMMAND_OK), or
 *   - OD_PG_EQUERY and the error result (SQL error: fatal for this input), or
 *   - OD_PG_EUNAVAIL and res == NULL (connection lost while the query was
 *     in flight: it may or may not have been executed — retriable only when
 *     the statement is idempotent).
 * The result is owned by the pool and freed after the callback returns.
 */
#ifndef OD_PG_H
#define OD_PG_H

#include <libpq-fe.h>
#include <uv.h>

typedef struct od_pg od_pg_t;

enum {
    OD_PG_OK = 0,        /**< the statement ran; res holds its result */
    OD_PG_EQUERY = -1,   /**< the statement failed; res holds the error (PQresultErrorField) */
    OD_PG_EUNAVAIL = -2, /**< the connection broke; res is NULL */
};

/** A statement prepared on every connection of the pool under `name`. */
typedef struct od_pg_stmt {
    const char *name; /**< prepared statement name, used by od_pg_query */
    const char *sql;  /**< text with $1..$n parameters (types inferred or cast in SQL) */
} od_pg_stmt_t;

/** Called once per query; `res` is valid only during the call. */
typedef void (*od_pg_cb)(void *arg, int status, PGresult *res);

/**
 * Creates a pool of `nconns` connections to `dsn` and starts connecting at
 * once (asynchronously). The `stmts` array (and its strings) must outlive the
 * pool. `name` labels the pool in logs and metrics.
 */
od_pg_t *od_pg_new(uv_loop_t *loop, const char *name, const char *dsn, int nconns, const od_pg_stmt_t *stmts,
                   size_t nstmts);
/**
 * The same, with libpq `options` for every connection (e.g. "-c
 * statement_timeout=20000"), a default that an `options` in `dsn` overrides.
 * NULL: none.
 */
od_pg_t *od_pg_new_opts(uv_loop_t *loop, const char *name, const char *dsn, const char *options, int nconns,
                        const od_pg_stmt_t *stmts, size_t nstmts);

/**
 * Sends prepared statement `stmt` with text parameters (`values[i]` NULL is
 * SQL NULL). Parameters are copied; the caller's memory may go right away.
 * Picks the ready connection with the fewest queries in flight. Returns 0, or
 * -1 if no connection is ready (the callback is then never called).
 */
int od_pg_query(od_pg_t *pg, const char *stmt, int nparams, const char *const *values, od_pg_cb cb, void *arg);

/** od_pg_query_bounded: every ready connection has its most queries in flight. */
#define OD_PG_EFULL (-2)

/**
 * Bounds the queries in flight per connection for od_pg_query_bounded (0,
 * the default: no bound). Pipelined queries wait in PostgreSQL's socket and
 * in libpq's buffers, so this bounds the memory and the wait a burst costs.
 */
void od_pg_set_max_queue(od_pg_t *pg, int per_conn);
/**
 * od_pg_query for work that may be refused under load (requests from
 * outside): returns OD_PG_EFULL (callback never called) when every ready
 * connection already has the od_pg_set_max_queue bound of queries in flight.
 */
int od_pg_query_bounded(od_pg_t *pg, const char *stmt, int nparams, const char *const *values, od_pg_cb cb,
                        void *arg);

/** Number of connections ready for queries (0 = the database is unreachable). */
int od_pg_ready(const od_pg_t *pg);
/** Queries sent and not yet answered, over all connections. */
int od_pg_inflight(const od_pg_t *pg);

/**
 * Closes the pool: queries in flight get OD_PG_EUNAVAIL (their callbacks run
 * before od_pg_close returns; od_pg_query called from them returns -1),
 * handles are closed, and the memory is freed once libuv has closed them (run
 * the loop after). May be called from a query callback; call it once.
 */
void od_pg_close(od_pg_t *pg);

/** What an error result says about retrying (od_pg_error_kind). */
typedef enum od_pg_err_kind {
    OD_PG_ERR_RETRIABLE, /**< not the statement's fault: no SQLSTATE (libpq), 08 connection, 40 rollback
                              (serialization, deadlock), 53 resources, 57 operator (shutdown, canceled),
                              58 system, 55P03 lock timeout. The same statement may succeed later. */
    OD_PG_ERR_INPUT,     /**< the values sent are bad: 22 data exception (out of range, invalid text),
                              23 integrity constraint. Retrying cannot help; the sender is told. */
    OD_PG_ERR_BUG,       /**< anything else (a missing function during a migration, a syntax error):
                              ours to fix; a retry may succeed once it is fixed */
} od_pg_err_kind_t;

/** Classifies an error result by its SQLSTATE (NULL or no SQLSTATE: retriable). */
od_pg_err_kind_t od_pg_error_kind(const PGresult *res);

/** SQLSTATE of an error result ("" if none, or if `res` is NULL). */
const char *od_pg_sqlstate(const PGresult *res);
/** Primary error message of an error result ("" if none, or if `res` is NULL). */
const char *od_pg_errmsg(const PGresult *res);

#endif
