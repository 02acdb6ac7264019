/*
 * Kafka on libuv (librdkafka 2.0.2). The producer and the consumer each wake
 * the loop through rd_kafka_queue_io_event_enable() on a pipe watched by
 * uv_poll; every librdkafka callback (delivery reports, rebalances, messages)
 * runs on the loop thread.
 *
 * Producer: idempotent (enable.idempotence=true, acks=all), partitioner
 * murmur2_random (the Java client's), payloads copied.
 *
 * Consumer: one topic, a consumer group, enable.auto.offset.store=false.
 * The service reports each message "done" once its work is durable
 * (od_kcons_done); the library stores, per partition, the offset after the
 * longest done prefix and commits stored offsets (auto-commit every second,
 * and synchronously on revoke and close). Work finished out of order is
 * therefore never committed past a message still in progress.
 */
#ifndef OD_KAFKA_H
#define OD_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <uv.h>

/* ---- producer ---- */

typedef struct od_kprod od_kprod_t;

/** Delivery report: err is RD_KAFKA_RESP_ERR_NO_ERROR once the broker has the message (acks=all). */
typedef void (*od_kprod_cb)(void *arg, rd_kafka_resp_err_t err);

/**
 * Creates a producer. `extra` is a NULL-terminated list of key, value pairs of
 * librdkafka properties applied last (may be NULL). Returns NULL with `errstr`
 * filled on bad configuration.
 */
od_kprod_t *od_kprod_new(uv_loop_t *loop, const char *brokers, const char *client_id, const char *const *extra,
                         char *errstr, size_t errlen);

/**
 * Produces one message to `topic` (created handles are cached by name).
 * Returns 0 and later calls `cb` exactly once (may be NULL), or returns the
 * librdkafka error at once (e.g. _QUEUE_FULL) and never calls `cb`. The error
 * is a nonzero rd_kafka_resp_err_t: librdkafka's local errors are negative,
 * broker errors such as MSG_SIZE_TOO_LARGE positive.
 */
int od_kprod_send(od_kprod_t *p, const char *topic, const void *key, size_t keylen, const void *payload, size_t len,
                  od_kprod_cb cb, void *arg);

/** Messages produced and not yet reported. */
int od_kprod_inflight(const od_kprod_t *p);
/** 1 while at least one broker is up (from the last error / stats seen), else 0. */
int od_kprod_up(const od_kprod_t *p);

/**
 * Waits (blocking the loop, at most `timeout_ms`) for outstanding delivery
 * reports, calling their callbacks, then destroys the producer. Messages not
 * reported in time are purged; their callbacks get the purge error
 * (_PURGE_QUEUE / _PURGE_INFLIGHT), so every callback runs exactly once.
 * Not from inside this producer's callbacks. The memory is released by the
 * handles' close callbacks: run the loop afterwards.
 */
void od_kprod_destroy(od_kprod_t *p, int timeout_ms);

/**
 * The partition murmur2_random gives `key` among `partition_cnt` (what Java
 * clients do). A NULL key has no fixed partition: RD_KAFKA_PARTITION_UA (-1).
 */
int32_t od_kafka_partition_for(const void *key, size_t keylen, int32_t partition_cnt);

/* ---- consumer ---- */

typedef struct od_kcons od_kcons_t;

/** Identifies one consumed message for od_kcons_done (small; copy it freely). */
typedef struct od_ktoken {
    int32_t partition;
    int64_t offset;
    uint32_t generation; /**< assignment generation: tokens of revoked assignments are ignored */
} od_ktoken_t;

typedef struct od_kcons_handlers {
    /**
     * One message (never an error message). `msg` is valid only during the
     * call: copy what you keep. Call od_kcons_done(tok) later (or inside) when
     * its work is durable.
     */
    void (*on_message)(void *arg, const rd_kafka_message_t *msg, od_ktoken_t tok);
    /** Partitions newly assigned to this member (after the assignment is in place). May be NULL. */
    void (*on_assign)(void *arg, const rd_kafka_topic_partition_list_t *parts);
    /**
     * Partitions taken away: drop in-memory work of these partitions (its
     * messages will be redelivered to the new owner). Called before the
     * final commit of the revoked partitions. May be NULL.
     */
    void (*on_revoke)(void *arg, const rd_kafka_topic_partition_list_t *parts);
} od_kcons_handlers_t;

/**
 * Creates a consumer in group `group` subscribed to `topic`. `handlers` is
 * copied. `extra` as for od_kprod_new. Returns NULL with `errstr` on failure.
 */
od_kcons_t *od_kcons_new(uv_loop_t *loop, const char *brokers, const char *group, const char *topic,
                         const od_kcons_handlers_t *handlers, void *arg, const char *const *extra, char *errstr,
                         size_t errlen);

/** Marks a message's work durable; advances the stored offset over the done prefix. */
void od_kcons_done(od_kcons_t *c, od_ktoken_t tok);

/**
 * Stops handing messages to on_message (backpressure): pauses fetching on the
 * assigned partitions; messages already fetched are held and delivered in
 * order after od_kcons_resume. Idempotent.
 */
void od_kcons_pause(od_kcons_t *c);
/** Resumes delivery after od_kcons_pause. Idempotent. */
void od_kcons_resume(od_kcons_t *c);

/** Partitions currently assigned (0 before the first rebalance). */
int od_kcons_assigned(const od_kcons_t *c);
/**
 * Partition count of the subscribed topic, or -1 if unknown. Asks the broker
 * at most every 30 s (blocking the loop for at most 2 s) and caches it.
 */
int od_kcons_partition_count(od_kcons_t *c);
/** Messages handed out and not yet done. */
int od_kcons_pending(const od_kcons_t *c);
/** Total consumer lag over the assigned partitions, from the last statistics (-1 unknown). */
int64_t od_kcons_lag(const od_kcons_t *c);

/**
 * Commits stored offsets, leaves the group (revoke callbacks run), and frees
 * the consumer. Blocks the loop (bounded by librdkafka's session timeouts).
 * Not from inside this consumer's callbacks. The memory is released by the
 * handles' close callbacks: run the loop afterwards.
 */
void od_kcons_destroy(od_kcons_t *c);

#endif
