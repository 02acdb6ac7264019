/* Unit tests for the limits of od/http.h before authentication: a server on
 * a loop in this thread, a client in another doing blocking exchanges. The
 * admission callback decides by the key: "up" uploads, "ten" is a tenant,
 * "busy" is refused, anything else is unknown. */
#define _GNU_SOURCE /* strcasestr */
#include "od/http.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "od/core.h"
#include "od_test.h"

static int port;
static uv_async_t done;

static void on_admit(void *arg, od_http_admit_t *adm, const char *key, size_t len, const struct sockaddr *peer)
{
    (void)arg, (void)peer;
    int level = len == 2 && memcmp(key, "up", 2) == 0     ? OD_HTTP_UPLOADER
                : len == 3 && memcmp(key, "ten", 3) == 0  ? OD_HTTP_TENANT
                : len == 4 && memcmp(key, "busy", 4) == 0 ? OD_HTTP_REFUSE
                                                           : OD_HTTP_ANON;
    od_http_admit_done(adm, level);
}

/* POST /echo answers the body's length; "x-level: 1" or 2 authenticates the connection. */
static void on_echo(void *arg, h2o_req_t *req, const od_http_params_t *params)
{
    (void)arg, (void)params;
    h2o_iovec_t lv = od_http_header(req, "x-level");
    if (lv.len == 1)
        od_http_conn_level(req, lv.base[0] - '0');
    char out[32];
    int n = snprintf(out, sizeof(out), "%zu", req->entity.len);
    od_http_send(req, 200, "text/plain", out, (size_t)n);
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(0x7f000001);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        abort();
    struct timeval tv = {3, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Sends `head` and `body` bytes of 'x'; reads the answer to the connection's end (or 3 s). */
static const char *ask_on(int fd, const char *head, size_t body)
{
    static char res[8192];
    size_t n = 0;
    ssize_t r;
    if (write(fd, head, strlen(head)) < 0)
        return "write failed";
    char *pad = calloc(1, body + 1);
    memset(pad, 'x', body);
    if (body > 0 && write(fd, pad, body) < 0) { /* a refused body may fail: the answer is still read */
    }
    free(pad);
    /* to the connection's end, or one whole answer (head and content-length) */
    while (n < sizeof(res) - 1 && (r = read(fd, res + n, sizeof(res) - 1 - n)) > 0) {
        n += (size_t)r;
        res[n] = '\0';
        const char *end = strstr(res, "\r\n\r\n"), *cl = strcasestr(res, "content-length:");
        if (end != NULL && cl != NULL && cl < end && n >= (size_t)(end + 4 - res) + strtoul(cl + 15, NULL, 10))
            break;
    }
    res[n] = '\0';
    return res;
}

static const char *ask(const char *head, size_t body)
{
    int fd = dial();
    const char *res = ask_on(fd, head, body);
    close(fd);
    return res;
}

static int starts(const char *res, const char *status)
{
    return strncmp(res, status, strlen(status)) == 0;
}

static double now_s(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static void *client(void *arg)
{
    (void)arg;
    const char *r;
    char head[2048];
    /* a small request without a key: answered, then the connection is closed */
    r = ask("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\n", 3);
    CHECK(starts(r, "HTTP/1.1 200") && strcasestr(r, "connection: close") != NULL && strstr(r, "\r\n\r\n3") != NULL);
    /* a large body announced without a key, or with an unknown or a tenant's: 413 from the head */
    r = ask("POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4000\r\n\r\n", 4000);
    CHECK(starts(r, "HTTP/1.1 413") && strstr(r, "\"code\":\"body_too_large\"") != NULL);
    r = ask("POST /echo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer nope\r\ncontent-length: 4000\r\n\r\n", 4000);
    CHECK(starts(r, "HTTP/1.1 413"));
    r = ask("POST /echo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ten\r\ncontent-length: 4000\r\n\r\n", 4000);
    CHECK(starts(r, "HTTP/1.1 413"));
    /* an uploader's key: read and answered */
    r = ask("POST /echo HTTP/1.1\r\nhost: x\r\nauthorization: bearer up\r\ncontent-length: 4000\r\n"
            "x-level: 0\r\n\r\n", 4000);
    CHECK(starts(r, "HTTP/1.1 200") && strstr(r, "\r\n\r\n4000") != NULL);
    /* refused by the service */
    r = ask("POST /echo HTTP/1.1\r\nhost: x\r\nauthorization: Bearer busy\r\ncontent-length: 4000\r\n\r\n", 0);
    CHECK(starts(r, "HTTP/1.1 503") && strstr(r, "\"code\":\"overloaded\"") != NULL &&
          strstr(r, "retry-after: 1") != NULL);
    /* header caps: 512 bytes, 8 fields */
    snprintf(head, sizeof(head), "GET /echo HTTP/1.1\r\nx-pad: %0600d\r\n\r\n", 0);
    r = ask(head, 0);
    CHECK(starts(r, "HTTP/1.1 431") && strstr(r, "\"code\":\"header_too_large\"") != NULL);
    r = ask("GET /x HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\nf: 1\r\ng: 1\r\nh: 1\r\ni: 1\r\n\r\n", 0);
    CHECK(starts(r, "HTTP/1.1 431"));
    r = ask("GET /x HTTP/1.1\r\na: 1\r\nb: 1\r\nc: 1\r\nd: 1\r\ne: 1\r\nf: 1\r\ng: 1\r\nh: 1\r\n\r\n", 0);
    CHECK(starts(r, "HTTP/1.1 404"));
    /* an authenticated connection is kept, and its level holds for the next request */
    int fd = dial();
    r = ask_on(fd, "POST /echo HTTP/1.1\r\nhost: x\r\nx-level: 2\r\ncontent-length: 0\r\n\r\n", 0);
    CHECK(starts(r, "HTTP/1.1 200") && strcasestr(r, "connection: keep-alive") != NULL);
    double t0 = now_s();
    r = ask_on(fd, "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 4000\r\n\r\n", 4000);
    CHECK(starts(r, "HTTP/1.1 200") && strstr(r, "\r\n\r\n4000") != NULL);
    close(fd);
    /* a slow head is closed at the header timeout (300 ms) without an answer */
    fd = dial();
    t0 = now_s();
    r = ask_on(fd, "POST /echo HTTP/1.1\r\nhost", 0);
    double took = now_s() - t0;
    CHECK(r[0] == '\0' && took > 0.2 && took < 1.5);
    close(fd);
    /* a body that does not come is cut at the request timeout (500 ms) */
    fd = dial();
    t0 = now_s();
    r = ask_on(fd, "POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n", 10);
    took = now_s() - t0;
    CHECK(r[0] == '\0' && took > 0.4 && took < 1.5);
    close(fd);
    /* over 4 connections: a canned 503 */
    int idle[4];
    for (int i = 0; i < 4; i++)
        idle[i] = dial();
    usleep(100 * 1000);
    r = ask("GET /x HTTP/1.1\r\n\r\n", 0);
    CHECK(starts(r, "HTTP/1.1 503") && strstr(r, "\"code\":\"too_many_connections\"") != NULL);
    for (int i = 0; i < 4; i++)
        close(idle[i]);
    usleep(100 * 1000);
    r = ask("GET /x HTTP/1.1\r\n\r\n", 0);
    CHECK(starts(r, "HTTP/1.1 404"));
    uv_async_send(&done);
    return NULL;
}

static void on_done(uv_async_t *a)
{
    uv_stop(a->loop);
}

int main(void)
{
    uv_loop_t *loop = uv_default_loop();
    char err[256];
    od_http_t *http = od_http_new(loop, "127.0.0.1", 0, 1024, err, sizeof(err));
    CHECK(http != NULL);
    od_http_limits_t lim = {.max_body = 1024,
                            .max_upload = 1 << 20,
                            .max_connections = 4,
                            .max_header_bytes = 512,
                            .max_headers = 8,
                            .header_timeout_ms = 300,
                            .request_timeout_ms = 500,
                            .upload_timeout_ms = 2000};
    od_http_set_limits(http, &lim);
    od_http_set_admit(http, on_admit, NULL);
    od_http_route(http, "POST", "/echo", on_echo, NULL);
    port = od_http_port(http);
    uv_async_init(loop, &done, on_done);
    pthread_t th;
    pthread_create(&th, NULL, client, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    od_http_close(http);
    return od_test_result("test_http_limits");
}
