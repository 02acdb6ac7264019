/* libcurl's multi interface on libuv (od/curlm.h). */
#include <stdlib.h>

#include "od/core.h"
#include "od/curlm.h"

struct od_curlm {
    CURLM *multi;
    uv_loop_t *loop;
    uv_timer_t timer; /* libcurl's timeout */
    od_curlm_done_fn done;
    void *arg;
};

typedef struct curlm_socket {
    uv_poll_t poll;
    curl_socket_t fd;
    od_curlm_t *m;
} curlm_socket_t;

/* Hands every finished transfer to `done`. */
static void collect(od_curlm_t *m)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE)
            m->done(m->arg, msg->easy_handle, msg->data.result);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    curlm_socket_t *s = p->data;
    int flags = 0, running;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    curl_multi_socket_action(s->m->multi, s->fd, flags, &running);
    collect(s->m);
}

static void on_socket_closed(uv_handle_t *h)
{
    free(h->data);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    od_curlm_t *m = userp;
    curlm_socket_t *s = socketp;
    (void)easy;
    if (what == CURL_POLL_REMOVE) {
        if (s != NULL) {
            uv_poll_stop(&s->poll);
            uv_close((uv_handle_t *)&s->poll, on_socket_closed);
            curl_multi_assign(m->multi, fd, NULL);
        }
        return 0;
    }
    if (s == NULL) {
        s = od_calloc(1, sizeof(*s));
        s->fd = fd;
        s->m = m;
        if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
            free(s);
            return -1;
        }
        s->poll.data = s;
        curl_multi_assign(m->multi, fd, s);
    }
    int events = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&s->poll, events, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    od_curlm_t *m = t->data;
    int running;
    curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect(m);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    od_curlm_t *m = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&m->timer);
    else /* 0 included: never act from inside libcurl's own call */
        uv_timer_start(&m->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

od_curlm_t *od_curlm_new(uv_loop_t *loop, od_curlm_done_fn done, void *arg)
{
    od_curlm_t *m = od_calloc(1, sizeof(*m));
    m->loop = loop;
    m->done = done;
    m->arg = arg;
    m->multi = curl_multi_init();
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
    uv_timer_init(loop, &m->timer);
    m->timer.data = m;
    return m;
}

int od_curlm_add(od_curlm_t *m, CURL *easy)
{
    return curl_multi_add_handle(m->multi, easy) == CURLM_OK ? 0 : -1;
}

void od_curlm_remove(od_curlm_t *m, CURL *easy)
{
    curl_multi_remove_handle(m->multi, easy);
}

static void on_timer_closed(uv_handle_t *h)
{
    free(h->data);
}

void od_curlm_close(od_curlm_t *m)
{
    curl_multi_cleanup(m->multi);
    uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}
