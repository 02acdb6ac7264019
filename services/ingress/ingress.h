/* outdial-ingress: the public HTTP API. Private header of the service. */
#ifndef OD_INGRESS_H
#define OD_INGRESS_H

#include "auth.h"
#include "od/http.h"
#include "od/kafka.h"
#include "od/pg.h"
#include "od/svc.h"

typedef struct ingress_conf {
    od_common_conf_t common;
    char *openapi_path;      /**< OUTDIAL_OPENAPI_PATH */
    int64_t auth_cache_ms;   /**< OUTDIAL_AUTH_CACHE_MS */
    int64_t events_max_streams_per_key; /**< OUTDIAL_EVENTS_MAX_STREAMS_PER_KEY */
    int64_t statement_timeout_ms;       /**< OUTDIAL_STATEMENT_TIMEOUT_MS */
    int64_t events_resume_window_s;     /**< OUTDIAL_EVENTS_RESUME_WINDOW_S */
    int64_t imports_per_project;        /**< OUTDIAL_IMPORTS_PER_PROJECT */
    int64_t publish_wait_ms; /**< OUTDIAL_PUBLISH_WAIT_MS */
    int64_t max_body;        /**< OUTDIAL_MAX_BODY */
    int64_t accept_batch;    /**< OUTDIAL_ACCEPT_BATCH */
    int64_t batch_max_bytes; /**< OUTDIAL_BATCH_MAX_BYTES */
    int64_t batch_max_rows;  /**< OUTDIAL_BATCH_MAX_ROWS */
    int64_t events_max_streams; /**< OUTDIAL_EVENTS_MAX_STREAMS */
    int webhook_allow_private;  /**< OUTDIAL_WEBHOOK_ALLOW_PRIVATE */
    char *secret_key;           /**< OUTDIAL_SECRET_KEY: seals the webhook secrets stored */
    char *console_dir;          /**< OUTDIAL_CONSOLE_DIR */
    /* before authentication (auth.h, od/http.h od_http_limits_t) */
    int64_t max_connections;    /**< OUTDIAL_HTTP_MAX_CONNECTIONS */
    int64_t max_header_bytes;   /**< OUTDIAL_HTTP_MAX_HEADER_BYTES */
    int64_t max_headers;        /**< OUTDIAL_HTTP_MAX_HEADERS */
    int64_t header_timeout_ms;  /**< OUTDIAL_HTTP_HEADER_TIMEOUT_MS */
    int64_t request_timeout_ms; /**< OUTDIAL_HTTP_REQUEST_TIMEOUT_MS */
    int64_t upload_timeout_ms;  /**< OUTDIAL_HTTP_UPLOAD_TIMEOUT_MS */
    int64_t auth_negative_ttl_ms; /**< OUTDIAL_AUTH_NEGATIVE_TTL_MS */
    int64_t auth_fail_max;        /**< OUTDIAL_AUTH_FAIL_MAX */
    int64_t auth_fail_window_ms;  /**< OUTDIAL_AUTH_FAIL_WINDOW_MS */
    int64_t auth_max_pending;     /**< OUTDIAL_AUTH_MAX_PENDING */
    int64_t pg_max_queue;         /**< OUTDIAL_PG_MAX_QUEUE */
} ingress_conf_t;

typedef struct ingress ingress_t;

/** Creates the API on svc's loop and HTTP server. Returns NULL on a fatal setup error. */
ingress_t *ingress_new(od_svc_t *svc, const ingress_conf_t *conf);

#endif
