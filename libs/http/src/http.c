#include "od/http.h"

#include <assert.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "od/core.h"
#include "od/log.h"
#include "od/metrics.h"
#include "od/utf8.h"

typedef struct route {
    char *method;
    char *pattern;
    od_http_route_fn fn;
    void *arg;
} route_t;

/*
 * h2o 2.2.5 reads max_request_entity_size and the HTTP/1 request timeout
 * from the connection's context (conn->ctx->globalconf) when it parses a
 * request's head, before any handler: there is no per-path limit and no
 * hook between the head and the body. So the trust a connection has earned
 * is its context, one per level (OD_HTTP_ANON ...): two configurations (the
 * small body limit and request timeout; the large ones) and three contexts.
 * A new connection's first head is read here (the header timeout, size and
 * count caps); a head that announces a large body is shown to the service
 * (od_http_set_admit) before h2o reads the body; later, a handler moves an
 * HTTP/1 connection between levels (od_http_conn_level).
 */
typedef struct level_ctx {
    h2o_context_t ctx; /* first: h2o hands back &ctx as req->conn->ctx */
    od_http_t *http;
    int level;         /* OD_HTTP_ANON, OD_HTTP_TENANT, OD_HTTP_UPLOADER */
} level_ctx_t;

/* One accepted TCP connection (uv_tcp_t first: libuv hands it back). */
typedef enum {
    CONN_HEAD,   /* reading the first request head into conn->head; conn->timer = header timeout */
    CONN_ADMIT,  /* the service decides the level (od_http_set_admit); not reading */
    CONN_H2O,    /* handed to h2o, which closes it (on_conn_closed) */
    CONN_REFUSE, /* writing a canned answer, then reading and dropping until EOF or conn->timer */
    CONN_CLOSING,
} conn_state_t;

struct od_http_admit {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    od_http_t *http;
    conn_state_t state;
    int handles;   /* handles not yet through their close callback */
    int counted;   /* counted in http->nconns */
    char *head;    /* CONN_HEAD/ADMIT: bytes read so far (max_header_bytes) */
    size_t len;
    size_t body;   /* CONN_ADMIT: the Content-Length announced (0 if chunked) */
};
typedef struct od_http_admit conn_t;

struct od_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    int port;
    h2o_globalconf_t config;     /* the small body limit and request timeout: ANON, TENANT */
    h2o_globalconf_t config_big; /* the upload limit and timeout: UPLOADER */
    level_ctx_t lctx[3];
    h2o_accept_ctx_t accept_ctx[3];
    od_http_limits_t lim;
    int nconns;                  /* open TCP connections (refused ones included while they linger) */
    int nrefusing;               /* connections in CONN_REFUSE */
    od_http_admit_fn admit;
    void *admit_arg;
    route_t *routes;
    size_t nroutes;
    od_http_ready_fn ready;
    void *ready_arg;
    od_metric_t *m_conns, *m_refused_conns, *m_refused_head, *m_header_timeout;
};

typedef struct handler {
    h2o_handler_t super;
    od_http_t *http;
} handler_t;

struct od_http_hold {
    h2o_req_t *req;
    od_http_hold_t **slot; /* in the request pool; cleared when either side goes */
};

static int nholds;

static const char *reason_of(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

/* Matches `path` against `pattern`; fills params for "{}" segments. */
static int route_match(const char *pattern, const char *path, size_t len, od_http_params_t *params)
{
    const char *p = pattern, *s = path, *end = path + len;
    params->n = 0;
    while (*p != '\0' && s < end) {
        if (p[0] == '{' && p[1] == '}') {
            const char *seg = s;
            while (s < end && *s != '/')
                s++;
            if (s == seg || params->n == OD_HTTP_MAX_PARAMS)
                return 0;
            params->v[params->n++] = h2o_iovec_init(seg, (size_t)(s - seg));
            p += 2;
            continue;
        }
        if (*p != *s)
            return 0;
        p++, s++;
    }
    return *p == '\0' && s == end;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    od_http_t *http = ((handler_t *)self)->http;
    od_http_params_t params;
    char allow[64] = ""; /* the path's methods, for a 405's Allow (RFC 9110 §15.5.6) */
    int path_found = 0;
    for (size_t i = 0; i < http->nroutes; i++) {
        route_t *r = &http->routes[i];
        if (!route_match(r->pattern, req->path_normalized.base, req->path_normalized.len, &params))
            continue;
        path_found = 1;
        if (!h2o_memis(req->method.base, req->method.len, r->method, strlen(r->method))) {
            if (strstr(allow, r->method) == NULL)
                snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s", allow[0] ? ", " : "",
                         r->method);
            continue;
        }
        r->fn(r->arg, req, &params);
        return 0;
    }
    if (path_found) {
        od_http_add_header(req, "allow", allow);
        od_http_problem(req, 405, "method_not_allowed", "this path does not take that method", NULL);
    } else
        od_http_problem(req, 404, "not_found", "no such endpoint", NULL);
    return 0;
}

/* ---- connections: the first head, admission, caps ---- */

static void conn_handle_closed(uv_handle_t *h)
{
    conn_t *c = h->data;
    if (--c->handles > 0)
        return;
    if (c->counted) {
        c->http->nconns--;
        od_metric_set(c->http->m_conns, c->http->nconns);
    }
    free(c->head);
    free(c);
}

static void conn_close(conn_t *c)
{
    if (c->state == CONN_CLOSING)
        return;
    if (c->state == CONN_REFUSE)
        c->http->nrefusing--;
    c->state = CONN_CLOSING;
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
}

/* h2o closed the socket it was given (h2o_uv_socket_create's close callback) */
static void on_conn_closed(uv_handle_t *h)
{
    conn_t *c = od_container_of(h, conn_t, tcp);
    c->state = CONN_CLOSING;
    c->tcp.data = c;
    conn_handle_closed(h);
}

static void on_refuse_timer(uv_timer_t *t)
{
    conn_close(t->data);
}

static void refuse_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char sink[65536];
    (void)h, (void)suggested;
    *buf = uv_buf_init(sink, sizeof(sink));
}

static void refuse_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    if (n < 0)
        conn_close(s->data);
}

static void on_refuse_written(uv_write_t *w, int status)
{
    conn_t *c = w->data;
    if (status != 0 || c->state != CONN_REFUSE)
        conn_close(c);
}

/* The canned answers given before h2o has the connection (RFC 9457 bodies). */
typedef enum {
    CANNED_413,       /* a body over max_body announced by a head that has not earned more */
    CANNED_431_BYTES, /* a first head over max_header_bytes */
    CANNED_431_COUNT, /* a first head with more than max_headers fields */
    CANNED_503_CONNS, /* over max_connections */
    CANNED_503_ADMIT, /* the service could not decide (od_http_admit_done OD_HTTP_REFUSE) */
    CANNED_N,
} canned_t;

#define CANNED(status, reason, code, detail)                                                                         \
    "HTTP/1.1 " #status " " reason "\r\ncontent-type: application/problem+json\r\nconnection: close\r\n"            \
    "cache-control: no-store\r\nretry-after: 1\r\ncontent-length: "                                                  \
    "%zu\r\n\r\n{\"type\":\"/problems/" code "\",\"title\":\"" reason "\",\"status\":" #status                      \
    ",\"detail\":\"" detail "\",\"code\":\"" code "\"}"

static const char *const canned_fmt[CANNED_N] = {
    [CANNED_413] = CANNED(413, "Content Too Large", "body_too_large",
                          "the request body is larger than this server accepts before authentication (or on this "
                          "route)"),
    [CANNED_431_BYTES] = CANNED(431, "Request Header Fields Too Large", "header_too_large",
                                "the request head is larger than this server accepts"),
    [CANNED_431_COUNT] = CANNED(431, "Request Header Fields Too Large", "header_too_large",
                                "the request has more header fields than this server accepts"),
    [CANNED_503_CONNS] = CANNED(503, "Service Unavailable", "too_many_connections",
                                "this server has as many connections open as it accepts; retry shortly"),
    [CANNED_503_ADMIT] = CANNED(503, "Service Unavailable", "overloaded",
                                "too many requests are waiting for authentication; retry shortly"),
};

/*
 * Answers `what` and closes: the client's bytes are read and dropped for up
 * to a second so that the close does not reset the answer away (a client
 * that sends its body without waiting reads the answer). Beyond
 * max_connections such connections at once they are closed at once.
 */
static void conn_refuse(conn_t *c, canned_t what)
{
    od_http_t *http = c->http;
    static char texts[CANNED_N][512];
    if (texts[what][0] == '\0') {
        /* Content-Length: the text after the blank line (the %zu is before it) */
        const char *body = strstr(canned_fmt[what], "\r\n\r\n") + 4;
        snprintf(texts[what], sizeof(texts[what]), canned_fmt[what], strlen(body));
    }
    if (c->state == CONN_HEAD)
        uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    if (http->nrefusing >= http->lim.max_connections) {
        c->state = CONN_HEAD; /* not counted in nrefusing */
        conn_close(c);
        return;
    }
    c->state = CONN_REFUSE;
    http->nrefusing++;
    uv_buf_t b = uv_buf_init(texts[what], (unsigned)strlen(texts[what]));
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_refuse_written) != 0) {
        conn_close(c);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, refuse_alloc, refuse_read);
    uv_timer_start(&c->timer, on_refuse_timer, 1000, 0);
}

/* Gives the connection (and the bytes read so far) to h2o under `level`'s context. */
static void conn_to_h2o(conn_t *c, int level)
{
    od_http_t *http = c->http;
    assert(level >= OD_HTTP_ANON && level <= OD_HTTP_UPLOADER);
    if (c->state == CONN_HEAD)
        uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_handle_closed); /* the tcp handle is h2o's now */
    c->state = CONN_H2O;
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    if (c->len > 0) {
        /* h2o's HTTP/1 reader parses what is already in its input buffer before it reads */
        h2o_iovec_t buf = h2o_buffer_reserve(&sock->input, c->len);
        memcpy(buf.base, c->head, c->len);
        sock->input->size += c->len;
    }
    free(c->head);
    c->head = NULL;
    h2o_accept(&http->accept_ctx[level], sock);
}

void od_http_admit_done(od_http_admit_t *c, int level)
{
    assert(c->state == CONN_ADMIT);
    if (level == OD_HTTP_REFUSE)
        conn_refuse(c, CANNED_503_ADMIT);
    else if (level != OD_HTTP_UPLOADER && c->body > c->http->config.max_request_entity_size)
        conn_refuse(c, CANNED_413); /* what h2o would answer, but read to the end: the client sees it */
    else
        conn_to_h2o(c, level);
}

static int hname_is(const char *p, size_t len, const char *name)
{
    return strlen(name) == len && strncasecmp(p, name, len) == 0;
}

/*
 * Looks at the first request head (complete in c->head[0..end)): counts its
 * header lines, and finds the body's announced size and the bearer key. It
 * does not validate HTTP: h2o parses the head again and answers what is
 * malformed. Returns 0, or -1 if there are too many header lines.
 */
static int head_scan(conn_t *c, size_t end, size_t *body, int *chunked, h2o_iovec_t *bearer)
{
    const char *p = c->head, *e = c->head + end;
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    int lines = 0;
    *body = 0, *chunked = 0;
    *bearer = h2o_iovec_init(NULL, 0);
    for (p = nl + 1; p < e; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(e - p));
        if (nl == NULL)
            break;
        const char *le = nl > p && nl[-1] == '\r' ? nl - 1 : nl;
        if (le == p)
            break; /* the blank line */
        if (++lines > c->http->lim.max_headers)
            return -1;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon == NULL)
            continue;
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        size_t vlen = (size_t)(le - v), nlen = (size_t)(colon - p);
        if (hname_is(p, nlen, "content-length")) {
            size_t n = 0;
            for (const char *d = v; d < le && *d >= '0' && *d <= '9'; d++)
                n = n > SIZE_MAX / 20 ? SIZE_MAX / 2 : n * 10 + (size_t)(*d - '0');
            *body = n;
        } else if (hname_is(p, nlen, "transfer-encoding")) {
            *chunked = 1;
        } else if (hname_is(p, nlen, "authorization") && vlen > 7 && strncasecmp(v, "Bearer ", 7) == 0) {
            *bearer = h2o_iovec_init(v + 7, vlen - 7);
        }
    }
    return 0;
}

/* The end of the head (after its blank line) within c->head, or 0 if not there yet. */
static size_t head_end(const conn_t *c)
{
    for (size_t i = 0; i < c->len; i++) {
        if (c->head[i] != '\n')
            continue;
        if (i + 1 < c->len && c->head[i + 1] == '\n')
            return i + 2;
        if (i + 2 < c->len && c->head[i + 1] == '\r' && c->head[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

static void head_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn_t *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->head + c->len, (unsigned)((size_t)c->http->lim.max_header_bytes - c->len));
}

static void head_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    conn_t *c = s->data;
    od_http_t *http = c->http;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    size_t end = head_end(c);
    if (end == 0) {
        /* the HTTP/2 preface is no HTTP/1 head: h2o takes it */
        if (c->len >= 3 && memcmp(c->head, "PRI", 3) == 0) {
            conn_to_h2o(c, OD_HTTP_ANON);
        } else if (c->len == (size_t)http->lim.max_header_bytes) {
            od_metric_add(http->m_refused_head, 1);
            conn_refuse(c, CANNED_431_BYTES);
        }
        return;
    }
    size_t body;
    int chunked;
    h2o_iovec_t bearer;
    if (head_scan(c, end, &body, &chunked, &bearer) != 0) {
        od_metric_add(http->m_refused_head, 1);
        conn_refuse(c, CANNED_431_COUNT);
        return;
    }
    if ((chunked || body > http->config.max_request_entity_size) && bearer.base != NULL && http->admit != NULL) {
        /* a large body: only a key that may upload gets the connection the larger limit */
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_timer_stop(&c->timer);
        c->state = CONN_ADMIT;
        c->body = chunked ? 0 : body;
        struct sockaddr_storage sa;
        int salen = sizeof(sa);
        if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&sa, &salen) != 0)
            sa.ss_family = AF_UNSPEC;
        http->admit(http->admit_arg, c, bearer.base, bearer.len, (struct sockaddr *)&sa);
        return;
    }
    if (body > http->config.max_request_entity_size)
        conn_refuse(c, CANNED_413);
    else
        conn_to_h2o(c, OD_HTTP_ANON);
}

static void on_header_timeout(uv_timer_t *t)
{
    conn_t *c = t->data;
    od_metric_add(c->http->m_header_timeout, 1);
    conn_close(c); /* slow or silent: no answer, as h2o does for its own request timeout */
}

static void on_connection(uv_stream_t *listener, int status)
{
    od_http_t *http = listener->data;
    if (status != 0)
        return;
    conn_t *c = od_calloc(1, sizeof(*c));
    c->http = http;
    c->state = CONN_HEAD;
    uv_tcp_init(listener->loop, &c->tcp);
    uv_timer_init(listener->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles = 2;
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    c->counted = 1;
    http->nconns++;
    od_metric_set(http->m_conns, http->nconns);
    uv_tcp_nodelay(&c->tcp, 1);
    if (http->nconns > http->lim.max_connections) {
        od_metric_add(http->m_refused_conns, 1);
        conn_refuse(c, CANNED_503_CONNS);
        return;
    }
    c->head = od_malloc((size_t)http->lim.max_header_bytes);
    uv_timer_start(&c->timer, on_header_timeout, http->lim.header_timeout_ms, 0);
    uv_read_start((uv_stream_t *)&c->tcp, head_alloc, head_read);
}

/*
 * h2o answers some errors itself before any handler runs (413 for a body over
 * max_request_entity_size, 400 for malformed HTTP), as text/plain. This
 * output filter turns those into problem+json like every other error.
 */
typedef struct problem_ostream {
    h2o_ostream_t super;
    h2o_iovec_t body;
} problem_ostream_t;

static void problem_do_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t bufcnt,
                            h2o_send_state_t state)
{
    problem_ostream_t *po = (problem_ostream_t *)self;
    (void)bufs, (void)bufcnt;
    if (h2o_send_state_is_in_progress(state)) {
        h2o_ostream_send_next(self, req, NULL, 0, state);
        return;
    }
    h2o_ostream_send_next(self, req, &po->body, 1, state);
}

static void on_setup_ostream(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
    (void)self;
    ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (req->res.status >= 400 && ct >= 0 &&
        h2o_memis(req->res.headers.entries[ct].value.base, OD_MIN(req->res.headers.entries[ct].value.len, 10),
                  H2O_STRLIT("text/plain"))) {
        const char *code = req->res.status == 413   ? "body_too_large"
                           : req->res.status == 400 ? "bad_request"
                                                    : "http_error";
        const char *detail = req->res.status == 413 ? "the request body is larger than this server accepts"
                                                    : "the HTTP request could not be processed";
        char buf[512];
        int n = snprintf(buf, sizeof(buf),
                         "{\"type\":\"/problems/%s\",\"title\":\"%s\",\"status\":%d,\"detail\":\"%s\","
                         "\"code\":\"%s\"}",
                         code, reason_of(req->res.status), req->res.status, detail, code);
        req->res.headers.entries[ct].value = h2o_iovec_init(H2O_STRLIT("application/problem+json"));
        req->res.content_length = (size_t)n;
        problem_ostream_t *po = (problem_ostream_t *)h2o_add_ostream(req, sizeof(*po), slot);
        po->super.do_send = problem_do_send;
        po->body = h2o_strdup(&req->pool, buf, (size_t)n);
        slot = &po->super.next;
    }
    h2o_setup_next_ostream(req, slot);
}

static void add_problem_filter(h2o_pathconf_t *pathconf)
{
    h2o_filter_t *f = h2o_create_filter(pathconf, sizeof(*f));
    f->on_setup_ostream = on_setup_ostream;
}

/* Registers the one handler and the problem filter on a configuration. */
static void conf_setup(od_http_t *http, h2o_globalconf_t *conf)
{
    h2o_config_init(conf);
    conf->server_name = h2o_iovec_init(H2O_STRLIT("outdial"));
    /* h2o 2.2.5 predates the HTTP/2 rapid-reset fixes: keep per-connection concurrency small */
    conf->http2.max_concurrent_requests_per_connection = 16;
    h2o_hostconf_t *hostconf = h2o_config_register_host(conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    handler_t *handler = (handler_t *)h2o_create_handler(pathconf, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->http = http;
    add_problem_filter(pathconf);
    add_problem_filter(&hostconf->fallback_path);
}

/* Applies http->lim to the two configurations (read by h2o at each request head). */
static void limits_apply(od_http_t *http)
{
    http->config.max_request_entity_size = http->lim.max_body;
    http->config.http1.req_timeout = http->lim.request_timeout_ms;
    http->config.http2.idle_timeout = http->lim.request_timeout_ms;
    http->config_big.max_request_entity_size = OD_MAX(http->lim.max_upload, http->lim.max_body);
    http->config_big.http1.req_timeout = http->lim.upload_timeout_ms;
    http->config_big.http2.idle_timeout = http->lim.upload_timeout_ms;
    for (int i = 0; i < 3; i++) {
        /* h2o copies the timeouts into its context at init: keep them in step */
        h2o_globalconf_t *conf = http->lctx[i].ctx.globalconf;
        http->lctx[i].ctx.http1.req_timeout.timeout = conf->http1.req_timeout;
        http->lctx[i].ctx.http2.idle_timeout.timeout = conf->http2.idle_timeout;
    }
}

od_http_t *od_http_new(uv_loop_t *loop, const char *host, int port, size_t max_entity, char *errstr, size_t errlen)
{
    static int sigpipe_ignored;
    if (!sigpipe_ignored) {
        signal(SIGPIPE, SIG_IGN);
        sigpipe_ignored = 1;
    }
    od_http_t *http = od_calloc(1, sizeof(*http));
    http->loop = loop;
    http->lim = (od_http_limits_t)OD_HTTP_LIMITS_DEFAULT;
    http->lim.max_body = http->lim.max_upload = max_entity;
    conf_setup(http, &http->config);
    conf_setup(http, &http->config_big);
    for (int i = 0; i < 3; i++) {
        level_ctx_t *lc = &http->lctx[i];
        lc->http = http;
        lc->level = i;
        h2o_context_init(&lc->ctx, loop, i == OD_HTTP_UPLOADER ? &http->config_big : &http->config);
        http->accept_ctx[i].ctx = &lc->ctx;
        http->accept_ctx[i].hosts = lc->ctx.globalconf->hosts;
    }
    limits_apply(http);
    http->m_conns = od_gauge("outdial_http_connections", NULL, "TCP connections open on the HTTP port");
    static const char refused_help[] = "connections refused before any request reached a handler, by reason";
    http->m_refused_conns = od_counter("outdial_http_refused_total", "reason=\"too_many_connections\"", refused_help);
    http->m_refused_head = od_counter("outdial_http_refused_total", "reason=\"header_too_large\"", refused_help);
    http->m_header_timeout = od_counter("outdial_http_refused_total", "reason=\"header_timeout\"", refused_help);
    od_metric_set(http->m_conns, 0);

    struct sockaddr_storage addr;
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
        snprintf(errstr, errlen, "bad listen address %s", host);
        goto fail;
    }
    uv_tcp_init(loop, &http->listener);
    http->listener.data = http;
    http->listening = 1;
    int r;
    if ((r = uv_tcp_bind(&http->listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&http->listener, 1024, on_connection)) != 0) {
        snprintf(errstr, errlen, "cannot listen on %s:%d: %s", host, port, uv_strerror(r));
        od_http_close(http);
        return NULL;
    }
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&http->listener, (struct sockaddr *)&bound, &blen);
    http->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                   : ((struct sockaddr_in *)&bound)->sin_port);
    return http;
fail:
    for (int i = 0; i < 3; i++)
        h2o_context_dispose(&http->lctx[i].ctx);
    h2o_config_dispose(&http->config);
    h2o_config_dispose(&http->config_big);
    free(http);
    return NULL;
}

void od_http_set_max_entity(od_http_t *http, size_t max_entity)
{
    http->lim.max_upload = max_entity;
    limits_apply(http);
}

void od_http_set_limits(od_http_t *http, const od_http_limits_t *lim)
{
    assert(lim->max_header_bytes >= 256 && lim->max_headers >= 1 && lim->max_connections >= 1);
    http->lim = *lim;
    limits_apply(http);
}

void od_http_set_admit(od_http_t *http, od_http_admit_fn fn, void *arg)
{
    http->admit = fn;
    http->admit_arg = arg;
}

static level_ctx_t *level_of(h2o_req_t *req)
{
    return od_container_of(req->conn->ctx, level_ctx_t, ctx);
}

void od_http_conn_level(h2o_req_t *req, int level)
{
    assert(level >= OD_HTTP_ANON && level <= OD_HTTP_UPLOADER);
    level_ctx_t *lc = level_of(req);
    /* HTTP/2 streams share their connection (and its context): an HTTP/2
     * connection keeps the level it was accepted with */
    if (req->version >= 0x200 || lc->level == level)
        return;
    /* h2o reads conn->ctx again for the next request of the connection: its
     * timeout, its body limit. Entries already linked on the old context's
     * timeout lists unlink themselves, so moving is safe between requests. */
    req->conn->ctx = &lc->http->lctx[level].ctx;
}

int od_http_port(const od_http_t *http)
{
    return http->port;
}

void od_http_route(od_http_t *http, const char *method, const char *pattern, od_http_route_fn fn, void *arg)
{
    http->routes = od_realloc(http->routes, sizeof(route_t) * (http->nroutes + 1));
    http->routes[http->nroutes++] = (route_t){od_strdup(method), od_strdup(pattern), fn, arg};
}

static void on_healthz(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    (void)arg, (void)params;
    od_http_send_json(req, 200, H2O_STRLIT("{\"status\":\"ok\"}"));
}

static void on_readyz(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    od_http_t *http = arg;
    (void)params;
    od_buf_t why = OD_BUF_INIT, body = OD_BUF_INIT;
    int ok = http->ready == NULL || http->ready(http->ready_arg, &why);
    od_buf_puts(&body, ok ? "{\"status\":\"ready\"" : "{\"status\":\"not_ready\"");
    if (why.len > 0) {
        od_buf_puts(&body, ",\"detail\":");
        od_buf_json_str(&body, why.base, why.len);
    }
    od_buf_puts(&body, "}");
    od_http_send_json(req, ok ? 200 : 503, body.base, body.len);
    od_buf_free(&why);
    od_buf_free(&body);
}

static void on_metrics(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    (void)arg, (void)params;
    od_buf_t out = OD_BUF_INIT;
    od_metrics_render(&out);
    od_http_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", out.base ? out.base : "", out.len);
    od_buf_free(&out);
}

void od_http_health_routes(od_http_t *http, od_http_ready_fn ready, void *arg)
{
    http->ready = ready;
    http->ready_arg = arg;
    od_http_route(http, "GET", "/healthz", on_healthz, http);
    od_http_route(http, "GET", "/readyz", on_readyz, http);
}

void od_http_metrics_route(od_http_t *http)
{
    od_http_route(http, "GET", "/metrics", on_metrics, http);
}

void od_http_status_routes(od_http_t *http, od_http_ready_fn ready, void *arg)
{
    od_http_health_routes(http, ready, arg);
    od_http_metrics_route(http);
}

void od_http_stop(od_http_t *http)
{
    if (http->listening) {
        http->listening = 0;
        uv_close((uv_handle_t *)&http->listener, NULL);
    }
}

void od_http_close(od_http_t *http)
{
    od_http_stop(http);
    for (size_t i = 0; i < http->nroutes; i++) {
        free(http->routes[i].method);
        free(http->routes[i].pattern);
    }
    free(http->routes);
    /* h2o 2.2.5 keeps per-connection state we cannot close from here; the
     * process exits right after. The context and config are left to exit. */
    http->nroutes = 0;
    http->routes = NULL;
}

void od_http_add_header(h2o_req_t *req, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    h2o_iovec_t n = h2o_strdup(&req->pool, name, nlen);
    h2o_iovec_t v = h2o_strdup(&req->pool, value, strlen(value));
    h2o_add_header_by_str(&req->pool, &req->res.headers, n.base, n.len, 0, NULL, v.base, v.len);
}

static void count_response(int status)
{
    static od_metric_t *by_class[6];
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    if (by_class[cls] == NULL) {
        char labels[32];
        snprintf(labels, sizeof(labels), "code=\"%dxx\"", cls);
        by_class[cls] = od_counter("outdial_http_responses_total", labels, "HTTP responses by status class");
    }
    od_metric_add(by_class[cls], 1);
}

/* A connection that no request has authenticated serves one request: the
 * next one comes on a new connection, through the first-head checks. */
static void keep_alive_if_trusted(h2o_req_t *req)
{
    if (level_of(req)->level == OD_HTTP_ANON)
        req->http1_is_persistent = 0;
}

void od_http_send(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    count_response(status);
    keep_alive_if_trusted(req);
    req->res.status = status;
    req->res.reason = reason_of(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    /* API answers are never stored; a caller that says otherwise (the console's files) is kept */
    if (h2o_find_header_by_str(&req->res.headers, H2O_STRLIT("cache-control"), -1) < 0)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void od_http_send_json(h2o_req_t *req, int status, const char *json, size_t len)
{
    od_http_send(req, status, "application/json", json, len);
}

void od_http_problem(h2o_req_t *req, int status, const char *code, const char *detail, const char *errors_json)
{
    od_buf_t b = OD_BUF_INIT;
    od_buf_printf(&b, "{\"type\":\"/problems/%s\",\"title\":", code);
    const char *title = reason_of(status);
    od_buf_json_str(&b, title, strlen(title));
    od_buf_printf(&b, ",\"status\":%d,\"detail\":", status);
    od_buf_json_str(&b, detail, strlen(detail));
    od_buf_puts(&b, ",\"code\":");
    od_buf_json_str(&b, code, strlen(code));
    if (errors_json != NULL) {
        od_buf_puts(&b, ",\"errors\":");
        od_buf_puts(&b, errors_json);
    }
    od_buf_puts(&b, "}");
    od_http_send(req, status, "application/problem+json", b.base, b.len);
    od_buf_free(&b);
}

void od_http_problem_field(h2o_req_t *req, int status, const char *code, const char *field, const char *message)
{
    od_buf_t e = OD_BUF_INIT;
    od_buf_puts(&e, "[{\"field\":");
    od_buf_json_str(&e, field, strlen(field));
    od_buf_puts(&e, ",\"code\":");
    od_buf_json_str(&e, code, strlen(code));
    od_buf_puts(&e, ",\"message\":");
    od_buf_json_str(&e, message, strlen(message));
    od_buf_puts(&e, "}]");
    od_http_problem(req, status, code, message, e.base);
    od_buf_free(&e);
}

h2o_iovec_t od_http_header(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    if (i < 0)
        return h2o_iovec_init(NULL, 0);
    return req->headers.entries[i].value;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *od_http_query(h2o_req_t *req, const char *name, int *bad)
{
    if (req->query_at == SIZE_MAX)
        return NULL;
    const char *q = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nlen = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        if (amp == NULL)
            amp = end;
        const char *eq = memchr(q, '=', (size_t)(amp - q));
        const char *kend = eq ? eq : amp;
        if ((size_t)(kend - q) == nlen && memcmp(q, name, nlen) == 0) {
            const char *v = eq ? eq + 1 : amp;
            char *out = h2o_mem_alloc_pool(&req->pool, (size_t)(amp - v) + 1), *o = out;
            for (const char *s = v; s < amp; s++) {
                if (*s == '+') {
                    *o++ = ' ';
                } else if (*s == '%') {
                    int h, l;
                    if (amp - s < 3) {
                        *bad = 1;
                        return NULL;
                    }
                    if ((h = hexval(s[1])) < 0 || (l = hexval(s[2])) < 0 || (h == 0 && l == 0)) {
                        *bad = 1;
                        return NULL;
                    }
                    *o++ = (char)(h * 16 + l);
                    s += 2;
                } else {
                    *o++ = *s;
                }
            }
            *o = '\0';
            /* decoded bytes go into JSON (jansson refuses invalid UTF-8) and SQL */
            if (od_utf8_check(out, (size_t)(o - out)) != 0) {
                *bad = 1;
                return NULL;
            }
            return out;
        }
        q = amp + 1;
    }
    return NULL;
}

int od_http_method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static void on_hold_dispose(void *p)
{
    od_http_hold_t **slot = p;
    if (*slot != NULL) {
        (*slot)->req = NULL;
        (*slot)->slot = NULL;
    }
}

od_http_hold_t *od_http_hold(h2o_req_t *req)
{
    od_http_hold_t *hold = od_malloc(sizeof(*hold));
    hold->req = req;
    hold->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*hold->slot), on_hold_dispose);
    *hold->slot = hold;
    nholds++;
    return hold;
}

h2o_req_t *od_http_held_req(od_http_hold_t *hold)
{
    return hold->req;
}

void od_http_release(od_http_hold_t *hold)
{
    if (hold->slot != NULL)
        *hold->slot = NULL;
    nholds--;
    free(hold);
}

int od_http_holds(void)
{
    return nholds;
}

/* ---- streaming ---- */

struct od_http_stream {
    h2o_generator_t super; /* first: h2o hands it back */
    h2o_req_t *req;
    od_http_stream_fn proceed, gone;
    void *arg;
    char *chunk; /* the chunk h2o is sending (freed on proceed or with the request) */
    int finished;
};

static void stream_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    od_http_stream_t *s = (od_http_stream_t *)self;
    (void)req;
    free(s->chunk);
    s->chunk = NULL;
    if (!s->finished)
        s->proceed(s->arg);
}

static void stream_stop(h2o_generator_t *self, h2o_req_t *req)
{
    od_http_stream_t *s = (od_http_stream_t *)self;
    (void)req;
    if (!s->finished) {
        s->finished = 1;
        s->gone(s->arg);
    }
}

static void stream_dispose(void *p)
{
    od_http_stream_t *s = p;
    if (!s->finished) {
        s->finished = 1;
        s->gone(s->arg);
    }
    free(s->chunk);
}

od_http_stream_t *od_http_stream_start(h2o_req_t *req, int status, const char *content_type,
                                       od_http_stream_fn proceed, od_http_stream_fn gone, void *arg)
{
    od_http_stream_t *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), stream_dispose);
    memset(s, 0, sizeof(*s));
    s->super.proceed = stream_proceed;
    s->super.stop = stream_stop;
    s->req = req;
    s->proceed = proceed;
    s->gone = gone;
    s->arg = arg;
    count_response(status);
    keep_alive_if_trusted(req);
    req->res.status = status;
    req->res.reason = reason_of(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type, strlen(content_type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_start_response(req, &s->super);
    return s;
}

void od_http_stream_abort(od_http_stream_t *s)
{
    s->finished = 1;
    h2o_send(s->req, NULL, 0, H2O_SEND_STATE_ERROR);
}

void od_http_stream_send(od_http_stream_t *s, const char *data, size_t len, int final)
{
    h2o_iovec_t buf = h2o_iovec_init(NULL, 0);
    if (len > 0) {
        s->chunk = od_malloc(len);
        memcpy(s->chunk, data, len);
        buf = h2o_iovec_init(s->chunk, len);
    }
    if (final)
        s->finished = 1;
    h2o_send(s->req, &buf, len > 0 ? 1 : 0, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}
