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

struct od_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int listening;
    int port;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    route_t *routes;
    size_t nroutes;
    od_http_ready_fn ready;
    void *ready_arg;
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

static void on_close_free(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *listener, int status)
{
    od_http_t *http = listener->data;
    if (status != 0)
        return;
    uv_tcp_t *conn = od_malloc(sizeof(*conn));
    uv_tcp_init(listener->loop, conn);
    if (uv_accept(listener, (uv_stream_t *)conn) != 0) {
        uv_close((uv_handle_t *)conn, on_close_free);
        return;
    }
    uv_tcp_nodelay(conn, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)conn, on_close_free);
    h2o_accept(&http->accept_ctx, sock);
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

od_http_t *od_http_new(uv_loop_t *loop, const char *host, int port, size_t max_entity, char *errstr, size_t errlen)
{
    static int sigpipe_ignored;
    if (!sigpipe_ignored) {
        signal(SIGPIPE, SIG_IGN);
        sigpipe_ignored = 1;
    }
    od_http_t *http = od_calloc(1, sizeof(*http));
    http->loop = loop;
    h2o_config_init(&http->config);
    http->config.max_request_entity_size = max_entity;
    http->config.server_name = h2o_iovec_init(H2O_STRLIT("outdial"));
    /* h2o 2.2.5 predates the HTTP/2 rapid-reset fixes: keep per-connection concurrency small */
    http->config.http2.max_concurrent_requests_per_connection = 16;
    h2o_hostconf_t *hostconf = h2o_config_register_host(&http->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(hostconf, "/", 0);
    handler_t *handler = (handler_t *)h2o_create_handler(pathconf, sizeof(*handler));
    handler->super.on_req = on_req;
    handler->http = http;
    add_problem_filter(pathconf);
    add_problem_filter(&hostconf->fallback_path);
    h2o_context_init(&http->ctx, loop, &http->config);
    http->accept_ctx.ctx = &http->ctx;
    http->accept_ctx.hosts = http->config.hosts;

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
    h2o_context_dispose(&http->ctx);
    h2o_config_dispose(&http->config);
    free(http);
    return NULL;
}

void od_http_set_max_entity(od_http_t *http, size_t max_entity)
{
    http->config.max_request_entity_size = max_entity;
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

void od_http_send(h2o_req_t *req, int status, const char *content_type, const char *body, size_t len)
{
    count_response(status);
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
