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
 * `max_entity` bounds request bodies (h2o answers 413 beyond it) until
 * od_http_set_limits says otherwise.
 * Returns NULL with `errstr` filled if the address can't be bound.
 */
od_http_t *od_http_new(uv_loop_t *loop, const char *host, int port, size_t max_entity, char *errstr, size_t errlen);
/** Changes the bound on UPLOADER connections' bodies (max_upload). */
void od_http_set_max_entity(od_http_t *http, size_t max_entity);
/* ---- limits before authentication ---- */

/**
 * The trust a connection has earned, which decides its limits. Every
 * connection starts ANON; a handler moves an HTTP/1 connection with
 * od_http_conn_level once it has authenticated a request.
 */
enum {
    OD_HTTP_ANON = 0,     /**< no request authenticated: small bodies, one request per connection */
    OD_HTTP_TENANT = 1,   /**< a valid key: small bodies, keep-alive */
    OD_HTTP_UPLOADER = 2, /**< a valid key that may upload: bodies up to max_upload, the upload timeout */
    OD_HTTP_REFUSE = -1,  /**< od_http_admit_done: answer 503 overloaded and close */
};

/** The HTTP server's caps (od_http_set_limits). */
typedef struct od_http_limits {
    size_t max_body;            /**< largest body of ANON and TENANT connections (h2o answers 413) */
    size_t max_upload;          /**< largest body of UPLOADER connections */
    int max_connections;        /**< open connections; beyond, new ones get a canned 503 and are closed */
    int max_header_bytes;       /**< size of a new connection's first request head (431 beyond) */
    int max_headers;            /**< header fields in that head (431 beyond) */
    uint64_t header_timeout_ms; /**< from accept to the end of the first head (closed without an answer) */
    uint64_t request_timeout_ms; /**< h2o's HTTP/1 request timeout (the rest of a head and its body, and
                                      keep-alive idle) and HTTP/2 idle timeout, for ANON and TENANT */
    uint64_t upload_timeout_ms; /**< the same for UPLOADER connections */
} od_http_limits_t;

#define OD_HTTP_LIMITS_DEFAULT {65536, 65536, 4096, 16384, 64, 10000, 10000, 300000}

/** Sets the limits (before connections come: a service's configuration). */
void od_http_set_limits(od_http_t *http, const od_http_limits_t *lim);

/**
 * A new connection whose first request head announces a body over max_body
 * (or chunked) and carries `Authorization: Bearer`: before h2o reads the
 * body, the service decides the connection's level from the key.
 */
typedef struct od_http_admit od_http_admit_t;
/** Decide, now or later, with od_http_admit_done (exactly once). `key` is valid during the call only. */
typedef void (*od_http_admit_fn)(void *arg, od_http_admit_t *adm, const char *key, size_t len,
                                 const struct sockaddr *peer);
void od_http_set_admit(od_http_t *http, od_http_admit_fn fn, void *arg);
/** The decision: OD_HTTP_ANON, OD_HTTP_TENANT, OD_HTTP_UPLOADER or OD_HTTP_REFUSE. */
void od_http_admit_done(od_http_admit_t *adm, int level);
/**
 * Moves the request's HTTP/1 connection to `level` for its next requests and
 * for the keep-alive of this one (an ANON connection is closed after its
 * answer). HTTP/2 connections keep the level they were accepted with.
 */
void od_http_conn_level(h2o_req_t *req, int level);

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
