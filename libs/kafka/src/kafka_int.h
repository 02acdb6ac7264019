/*
 * Private to libs/kafka: what the producer and the consumer share.
 *
 *   queue_watch.c     wakes the loop when a librdkafka queue gets events
 *   client_conf.c     configuration, librdkafka log routing, rate-limited logs
 *   offset_tracker.c  per-partition record of handed-out offsets and their "done" state
 */
#ifndef OD_KAFKA_INT_H
#define OD_KAFKA_INT_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <uv.h>

/* ---- queue_watch.c ---- */

typedef struct od__kwatch od__kwatch_t;
typedef void (*od__kwatch_cb)(od__kwatch_t *w);

/**
 * Bridges one librdkafka queue to the loop. librdkafka writes one byte to a
 * non-blocking pipe when the queue goes from empty to non-empty (and only once
 * until the queue is read again); uv_poll watches the pipe. A periodic timer
 * calls `serve` too, to keep max.poll.interval.ms alive and to catch any wake-up
 * lost to a race. `serve` must read the queue until it is empty (or arrange to
 * come back: no further byte arrives while the queue stays non-empty).
 */
struct od__kwatch {
    uv_poll_t poll;
    uv_timer_t timer;
    int fds[2];               /**< [0] read end (watched), [1] write end (librdkafka's) */
    rd_kafka_queue_t *rkqu;   /**< the watched queue; borrowed, the owner destroys it */
    od__kwatch_cb serve;      /**< called on the loop thread when the queue may have events */
    od__kwatch_cb on_closed;  /**< called once both handles are closed (free the owner here) */
    int open_handles;         /**< libuv handles not yet closed */
    void *data;               /**< the owner */
};

/** Creates the pipe, enables the io event on `rkqu` and starts watching. 0 or -1 with errstr. */
int od__kwatch_start(od__kwatch_t *w, uv_loop_t *loop, rd_kafka_queue_t *rkqu, uint64_t period_ms, od__kwatch_cb serve,
                     void *data, char *errstr, size_t errlen);
/** Disables the io event (librdkafka stops writing to the pipe) and stops both handles. Idempotent. */
void od__kwatch_stop(od__kwatch_t *w);
/** Stops, then closes the handles; `on_closed` runs from the loop once they are closed, after the pipe is closed. */
void od__kwatch_close(od__kwatch_t *w, od__kwatch_cb on_closed);

/* ---- client_conf.c ---- */

/** Sets one property; 0, or -1 with errstr ("name=value: reason"). */
int od__kconf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr, size_t errlen);
/** Sets a NULL-terminated list of name, value pairs (NULL list is empty). 0 or -1 with errstr. */
int od__kconf_set_list(rd_kafka_conf_t *conf, const char *const *kv, char *errstr, size_t errlen);
/**
 * Routes librdkafka's log lines into od_log. Sets log.queue=true; after
 * rd_kafka_new, call rd_kafka_set_log_queue(rk, NULL) so lines are served by
 * the loop thread's polls instead of being written from librdkafka's threads.
 */
int od__kconf_log(rd_kafka_conf_t *conf, char *errstr, size_t errlen);
/** Copies `s` into `dst` as a Prometheus label value (escapes \ " and newline). */
void od__klabel(char *dst, size_t dstlen, const char *key, const char *s);

/** A log rate limiter: at most OD__KRL_BURST lines per OD__KRL_WINDOW_MS, then a summary. */
#define OD__KRL_BURST 10
#define OD__KRL_WINDOW_MS 10000
typedef struct od__kratelimit {
    int64_t window_start_ms;
    int used;       /**< lines written in this window */
    int suppressed; /**< lines dropped in this window */
} od__kratelimit_t;

/**
 * 1 if a line may be written now. When a new window starts after lines were
 * dropped, *suppressed_out gets their number (to mention once), else 0.
 */
int od__kratelimit_allow(od__kratelimit_t *rl, int *suppressed_out);
/** "" or " (N similar lines suppressed)", to append to the line allowed after a drop. */
const char *od__kratelimit_note(int suppressed, char *buf, size_t len);

/* ---- offset_tracker.c ---- */

/**
 * Offsets of one partition handed to the application and not yet popped, in
 * increasing order, each with its done flag: a ring buffer used as a deque.
 * Push at the back when a message is handed out; mark done anywhere; pop the
 * done prefix from the front. Offsets are increasing but may have gaps
 * (compacted topics, transaction markers).
 */
typedef struct od__ktrack {
    int64_t *offsets; /**< ring of `cap` slots */
    uint8_t *done;    /**< parallel ring of done flags */
    size_t cap;       /**< power of two (or 0) */
    size_t head;      /**< index of the front */
    size_t len;       /**< entries in the ring */
    size_t ndone;     /**< entries marked done (and not popped) */
} od__ktrack_t;

void od__ktrack_init(od__ktrack_t *t);
/** Frees the ring and empties the tracker. */
void od__ktrack_reset(od__ktrack_t *t);
/** Appends `offset` (greater than every offset in the tracker). */
void od__ktrack_push(od__ktrack_t *t, int64_t offset);
/** Marks `offset` done: 0, or -1 if it is not in the tracker or already done. */
int od__ktrack_mark(od__ktrack_t *t, int64_t offset);
/** Pops the done prefix: returns the last popped offset, or -1 if the front is not done. */
int64_t od__ktrack_pop_done(od__ktrack_t *t);
/** Entries handed out and not done. */
static inline size_t od__ktrack_pending(const od__ktrack_t *t)
{
    return t->len - t->ndone;
}

#endif
