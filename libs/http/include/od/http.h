/*
 * HTTP on h2o 2.2.5 (libuv build): the listener, a small router with path
 * parameters, problem+json errors, deferred answers that survive the client
 * going away, and the /healthz, /readyz, /metrics endpoints every service has.
 *
 * All of it runs on the loop thread.
 */
#ifndef OD_HTTP_H
#define OD_HTTP_H

#define H2O_USE_LIBUV 1
#include <h2o.h>
#include <uv.h>

#include "od/buf.h"

typedef struct od_http od_http_t;

#define OD_HTTP_MAX_PARAMS 4

/** Path parameters matched by `{}` segments of a route pattern, in order. */
typedef struct od_http_params {
    h2o_iovec_t v[OD_HTTP_MAX_PARAMS];
    int n;
} od_http_params_t;

/** A route handler: answers now or later (see od_http_hold). */
typedef void (*od_http_route_fn)(void *arg, h2o_req_t *req, const od_http_params_t *params);

/** Readiness check for /readyz: returns 1 if ready, else 0 and appends the reason to `why`. */
typedef int (*od_http_ready_fn)(void *arg, od_buf_t *why);

/**
 * Creates the server and listens on host:port (port 0 picks a free port).
 * `max_entity` bounds request bodies (h2o answers 413 beyond it).
 * Returns NULL with `errstr` filled if the address can't be bound.
 */
od_http_t *od_http_new(uv_loop_t *loop, const char *host, int port, size_t max_entity, char *errstr, size_t errlen);
/** Changes the bound on request bodies (a service's configuration, read after od_http_new). */
void od_http_set_max_entity(od_http_t *http, size_t max_entity);
/** The port actually bound. */
int od_http_port(const od_http_t *http);
/**
 * Adds a route. `method` is "GET", "POST", ... ; `pattern` is an exact path
 * where a segment `{}` matches any one non-empty segment (e.g.
 * "/v1/calls/{}/cancel"). A path that matches a pattern but not its method
 * gets 405, with an `Allow` header listing the methods the path takes.
 * Unknown paths get 404. Both as problem+json.
 */
void od_http_route(od_http_t *http, const char *method, const char *pattern, od_http_route_fn fn, void *arg);
/** Adds GET /healthz (200 while the loop runs), /readyz (from `ready`) and /metrics. */
void od_http_status_routes(od_http_t *http, od_http_ready_fn ready, void *arg);
/** Adds GET /healthz and /readyz only (the metrics served by another listener: od_http_metrics_route). */
void od_http_health_routes(od_http_t *http, od_http_ready_fn ready, void *arg);
/** Adds GET /metrics (Prometheus text format). */
void od_http_metrics_route(od_http_t *http);
/** Stops accepting new connections (drain). Requests already in progress go on. */
void od_http_stop(od_http_t *http);
/** Closes everything and frees the server once handles are closed. */
void od_http_close(od_http_t *http);

/* ---- answering ---- */

/** Adds a response header (name lowercase; both copied into the request pool). */
void od_http_add_header(h2o_req_t *req, const char *name, const char *value);
/** Sends a complete response; `body` is copied. */
void od_http_send(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len);
/** Sends `application/json`. */
void od_http_send_json(h2o_req_t *req, int status, const char *json, size_t len);
/**
 * Sends an RFC 9457 problem: {"type","title","status","detail","code"[,"errors"]}.
 * `errors_json` is a JSON array text of {"field","code","message"} or NULL.
 */
void od_http_problem(h2o_req_t *req, int status, const char *code, const char *detail, const char *errors_json);
/** Shorthand: one field error. */
void od_http_problem_field(h2o_req_t *req, int status, const char *code, const char *field, const char *message);

/* ---- reading ---- */

/** Value of request header `name` (lowercase), or {NULL,0}. */
h2o_iovec_t od_http_header(h2o_req_t *req, const char *name);
/**
 * Percent-decoded value of query parameter `name` allocated in the request
 * pool, or NULL if absent. Sets *bad = 1 (and returns NULL) when the
 * encoding is invalid or the decoded value is not UTF-8 without NUL.
 */
char *od_http_query(h2o_req_t *req, const char *name, int *bad);
/** 1 if the request method is `m`. */
int od_http_method_is(h2o_req_t *req, const char *m);

/* ---- answering later ---- */

/**
 * A request whose answer comes from a later callback. h2o frees a request
 * whose HTTP/2 client went away; the hold notices, and od_http_held_req()
 * then returns NULL. The caller owns the hold and must od_http_release() it
 * exactly once, after answering or giving up.
 */
typedef struct od_http_hold od_http_hold_t;

od_http_hold_t *od_http_hold(h2o_req_t *req);
/** The request, or NULL if it is gone. */
h2o_req_t *od_http_held_req(od_http_hold_t *hold);
/** Releases the hold. */
void od_http_release(od_http_hold_t *hold);
/** Holds not yet released (drain waits for 0). */
int od_http_holds(void);

/* ---- streaming an answer ---- */

/**
 * An answer sent in chunks (chunked transfer coding), for bodies too large to
 * build whole (results.csv). After od_http_stream_start, send one chunk with
 * od_http_stream_send; the next may be sent once `proceed(arg)` has been
 * called (h2o took the previous one). The chunk with `final` set ends the
 * answer. `gone(arg)` is called once if the request dies before the final
 * chunk (client went away, server shutting down); the stream is invalid
 * from then on, and `proceed` is not called again. Neither callback is
 * called after the final chunk. The stream is freed with the request.
 */
typedef struct od_http_stream od_http_stream_t;
typedef void (*od_http_stream_fn)(void *arg);

od_http_stream_t *od_http_stream_start(h2o_req_t *req, int status, const char *content_type,
                                       od_http_stream_fn proceed, od_http_stream_fn gone, void *arg);
/** Sends `len` bytes (copied). Only once per proceed. */
void od_http_stream_send(od_http_stream_t *s, const char *data, size_t len, int final);
/**
 * Ends the answer as failed (the connection is closed without the chunked
 * terminator, so the client knows the body is incomplete). Only when a
 * chunk may be sent (after start or proceed).
 */
void od_http_stream_abort(od_http_stream_t *s);

#endif
