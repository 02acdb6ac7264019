/*
 * Configuration tables. Each service declares one static table of options
 * (name, type, default, help, reloadable), read from OUTDIAL_* environment
 * variables into the service's config struct. `--help` prints the table; the
 * README's configuration section is made from the same text.
 *
 *   static const od_conf_item_t conf_table[] = {
 *       OD_CONF_INT(my_conf_t, max_calls, "OUTDIAL_DIALER_MAX_CALLS", "100", 1, 100000, "..."),
 *   };
 */
#ifndef OD_CONFIG_H
#define OD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    OD_CONF_STR,    /**< char * (heap copy, freed by od_config_free) */
    OD_CONF_INT,    /**< int64_t within [min, max] */
    OD_CONF_DOUBLE, /**< double within [min, max] */
    OD_CONF_BOOL,   /**< int: 1 for "1|true|yes|on", 0 for "0|false|no|off" */
} od_conf_type_t;

typedef struct od_conf_item {
    const char *name;   /**< environment variable */
    od_conf_type_t type;
    size_t offset;      /**< offset of the field in the service's config struct */
    const char *defval; /**< default, as text; NULL means empty/unset for strings */
    double min, max;    /**< bounds for numbers */
    int reloadable;     /**< 1 if a running service re-reads it (none are today: restart to apply) */
    int secret;         /**< 1 if the value must never be printed */
    const char *help;
} od_conf_item_t;

#define OD_CONF_STR(T, field, env, def, help) {env, OD_CONF_STR, offsetof(T, field), def, 0, 0, 0, 0, help}
#define OD_CONF_SECRET(T, field, env, def, help) {env, OD_CONF_STR, offsetof(T, field), def, 0, 0, 0, 1, help}
#define OD_CONF_INT(T, field, env, def, lo, hi, help) {env, OD_CONF_INT, offsetof(T, field), def, lo, hi, 0, 0, help}
#define OD_CONF_DOUBLE(T, field, env, def, lo, hi, help) {env, OD_CONF_DOUBLE, offsetof(T, field), def, lo, hi, 0, 0, help}
#define OD_CONF_BOOL(T, field, env, def, help) {env, OD_CONF_BOOL, offsetof(T, field), def, 0, 1, 0, 0, help}

/** Options every service has; embed as the member `common` of the service config. */
typedef struct od_common_conf {
    char *pg_dsn;        /**< OUTDIAL_PG_DSN */
    char *kafka_brokers; /**< OUTDIAL_KAFKA_BROKERS */
    char *topic_prefix;  /**< OUTDIAL_TOPIC_PREFIX */
    char *http_host;     /**< OUTDIAL_HTTP_HOST */
    int64_t http_port;   /**< OUTDIAL_HTTP_PORT */
    char *log_level;     /**< OUTDIAL_LOG_LEVEL */
    int64_t pg_conns;    /**< OUTDIAL_PG_CONNS */
    int64_t drain_s;     /**< OUTDIAL_DRAIN_S */
    char *metrics_addr;  /**< OUTDIAL_METRICS_ADDR ("": /metrics on the HTTP port) */
} od_common_conf_t;

/** The common table entries for a service config type T with a member `common`. */
#define OD_COMMON_CONF(T, port)                                                                                               \
    OD_CONF_STR(T, common.pg_dsn, "OUTDIAL_PG_DSN", "host=127.0.0.1 port=55432 user=outdial dbname=outdial",                 \
                "PostgreSQL connection string (libpq conninfo or URI)"),                                                     \
        OD_CONF_STR(T, common.kafka_brokers, "OUTDIAL_KAFKA_BROKERS", "127.0.0.1:59092", "Kafka bootstrap servers"),        \
        OD_CONF_STR(T, common.topic_prefix, "OUTDIAL_TOPIC_PREFIX", "outdial.",                                              \
                    "prefix of the Kafka topics (calls.requested, calls.dispatch, calls.events) and consumer groups"),      \
        OD_CONF_STR(T, common.http_host, "OUTDIAL_HTTP_HOST", "127.0.0.1", "address the HTTP listener binds"),              \
        OD_CONF_INT(T, common.http_port, "OUTDIAL_HTTP_PORT", #port, 0, 65535,                                              \
                    "HTTP port (/healthz, /readyz, /metrics; the API on ingress); 0 picks a free port"),                   \
        OD_CONF_STR(T, common.log_level, "OUTDIAL_LOG_LEVEL", "info", "debug, info, warn or error"),                        \
        OD_CONF_INT(T, common.pg_conns, "OUTDIAL_PG_CONNS", "2", 1, 64, "PostgreSQL connections in the pool (pipelined)"), \
        OD_CONF_INT(T, common.drain_s, "OUTDIAL_DRAIN_S", "30", 0, 3600,                                                   \
                    "on SIGTERM, seconds to finish work in flight before exiting"),                                      \
        OD_CONF_STR(T, common.metrics_addr, "OUTDIAL_METRICS_ADDR", "",                                                  \
                    "host:port of a listener of its own for /metrics (its labels name projects and batches), so "  \
                    "the HTTP port need not expose them; empty: /metrics on OUTDIAL_HTTP_PORT")

/**
 * Reads every option of `table` from the environment (or its default) into
 * `conf`. Returns 0, or -1 with a message in `errstr` naming the option.
 */
int od_config_load(const od_conf_item_t *table, size_t n, void *conf, char *errstr, size_t errlen);
/** Frees the strings od_config_load allocated. */
void od_config_free(const od_conf_item_t *table, size_t n, void *conf);
/** Prints the table: name, default, reloadable, help. */
void od_config_print(FILE *fp, const od_conf_item_t *table, size_t n);
/**
 * Handles the command line of a service: `--help` prints `usage` and the table
 * and returns 1 (exit 0); unknown arguments print an error and return -1
 * (exit 2); otherwise 0.
 */
int od_config_args(int argc, char **argv, const char *usage, const od_conf_item_t *table, size_t n);

#endif
