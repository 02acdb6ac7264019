/* outdialctl: the operator CLI. Private header shared by its files. */
#ifndef OD_CTL_H
#define OD_CTL_H

#include <libpq-fe.h>

/** Applies proto/sql/NNN_*.sql files of `dir` not yet recorded in schema_migrations, in order. */
int ctl_migrate(PGconn *conn, const char *dir);
/**
 * Seals with $OUTDIAL_SECRET_KEY every webhook secret not yet sealed with
 * it (plain rows of before 023, rows of $OUTDIAL_SECRET_KEY_PREVIOUS); without
 * the key, warns of plain rows. 0, or -1 (a value no key opens, a bad key).
 */
int ctl_seal_secrets(PGconn *conn);
/** Creates the three topics (prefix + calls.requested|dispatch|events) if missing. */
int ctl_topics_create(const char *brokers, const char *prefix, int partitions, int replication);

/** The settings of `batch upload` (docs/batches.md); NULL: not given. */
typedef struct {
    const char *scenario;
    const char *pacing; /**< pacing_per_min, as typed */
    const char *start_at;
    const char *caller_id;
    const char *idempotency_key;
    const char *retry_on, *retry_max_attempts, *retry_delay_s; /**< the batch's retry policy, as typed */
    int no_wait;        /**< print the 201's batch (validating) instead of waiting for its validation */
} ctl_batch_upload_opts_t;

/** POST $OUTDIAL_URL/v1/batches with `path` as multipart/form-data, a progress
 *  bar on stderr; then, unless no_wait, polls the batch until it is validated;
 *  prints the batch (JSON) on stdout. Returns the exit status: 0 on 201/200, 2 on a bad option, else 1. */
int ctl_batch_upload(const char *path, const ctl_batch_upload_opts_t *o);
/** Polls GET $OUTDIAL_URL/v1/batches/`id` every `interval_ms`, a progress bar on
 *  stderr, until the batch is completed or canceled; prints it (JSON) on stdout.
 *  Returns the exit status: 0, or 1 on an error answer (404, 401, ...). */
int ctl_batch_watch(const char *id, long interval_ms);

#endif
