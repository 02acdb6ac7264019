/*
 * Wakes the libuv loop when a librdkafka queue has events.
 *
 * librdkafka 2.0.2 (rdkafka_queue.h, rd_kafka_q_io_event) writes the payload
 * to the fd only when an op is enqueued on an EMPTY queue, and at most once
 * until the queue is read again (the "sent" flag is cleared by every read).
 * Hence:
 *   - drain the pipe BEFORE serving the queue: draining after could swallow a
 *     byte written for an op enqueued after our last read, and no other byte
 *     comes while the queue stays non-empty;
 *   - serve the queue until it is empty;
 *   - a periodic timer serves anyway, as a safety net and so that a consumer
 *     keeps calling rd_kafka_consumer_poll (max.poll.interval.ms).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kafka_int.h"
#include "od/core.h"

static void drain_pipe(int fd)
{
    char buf[256];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        break; /* EAGAIN: empty */
    }
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    od__kwatch_t *w = od_container_of(h, od__kwatch_t, poll);
    (void)status; /* on error, serving is still the right thing: the timer keeps us going */
    (void)events;
    drain_pipe(w->fds[0]);
    w->serve(w);
}

static void on_timer(uv_timer_t *h)
{
    od__kwatch_t *w = od_container_of(h, od__kwatch_t, timer);
    w->serve(w);
}

int od__kwatch_start(od__kwatch_t *w, uv_loop_t *loop, rd_kafka_queue_t *rkqu, uint64_t period_ms, od__kwatch_cb serve,
                     void *data, char *errstr, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->fds[0] = w->fds[1] = -1;
    w->rkqu = rkqu;
    w->serve = serve;
    w->data = data;
    /* librdkafka requires a non-blocking fd: its threads must never block on a full pipe */
    int err = uv_pipe(w->fds, UV_NONBLOCK_PIPE, UV_NONBLOCK_PIPE);
    if (err != 0) {
        snprintf(errstr, errlen, "pipe: %s", uv_strerror(err));
        return -1;
    }
    if ((err = uv_poll_init(loop, &w->poll, w->fds[0])) != 0) {
        snprintf(errstr, errlen, "uv_poll_init: %s", uv_strerror(err));
        close(w->fds[0]);
        close(w->fds[1]);
        return -1;
    }
    uv_timer_init(loop, &w->timer);
    w->poll.data = w->timer.data = w;
    w->open_handles = 2;
    rd_kafka_queue_io_event_enable(rkqu, w->fds[1], "1", 1);
    uv_poll_start(&w->poll, UV_READABLE, on_readable);
    uv_timer_start(&w->timer, on_timer, period_ms, period_ms);
    return 0;
}

void od__kwatch_stop(od__kwatch_t *w)
{
    if (w->rkqu != NULL) {
        /* After this returns librdkafka no longer holds the fd (it copies it
         * under the queue lock), so the pipe may be closed later. */
        rd_kafka_queue_io_event_enable(w->rkqu, -1, NULL, 0);
        w->rkqu = NULL;
    }
    if (w->open_handles == 2) {
        uv_poll_stop(&w->poll);
        uv_timer_stop(&w->timer);
    }
}

static void on_handle_closed(uv_handle_t *h)
{
    od__kwatch_t *w = h->data;
    if (--w->open_handles > 0)
        return;
    close(w->fds[0]);
    close(w->fds[1]);
    w->fds[0] = w->fds[1] = -1;
    w->on_closed(w);
}

void od__kwatch_close(od__kwatch_t *w, od__kwatch_cb on_closed)
{
    od__kwatch_stop(w);
    w->on_closed = on_closed;
    uv_close((uv_handle_t *)&w->poll, on_handle_closed);
    uv_close((uv_handle_t *)&w->timer, on_handle_closed);
}
