/*
 * What every outdial daemon does the same way: read its configuration table
 * (and answer --help), set up logging, run one libuv loop, serve /healthz,
 * /readyz and /metrics, and drain on SIGTERM or SIGINT.
 *
 *   od_svc_t svc;
 *   int rc = od_svc_init(&svc, "outdial-dialer", argc, argv, usage, table, n, &conf, &conf.common);
 *   if (rc != 0) return rc < 0 ? 2 : 0;
 *   ... create the service's objects on svc.loop, od_svc_set_ready/od_svc_on_drain ...
 *   return od_svc_run(&svc);
 *
 * Drain: the first SIGTERM/SIGINT calls on_drain once (stop taking work,
 * finish or hand back what is in flight, commit); the service calls
 * od_svc_done() when it has finished. If it has not after `drain_s`
 * seconds, od_svc_done(svc, 1) is forced. A second signal forces it at once.
 */
#ifndef OD_SVC_H
#define OD_SVC_H

#include <uv.h>

#include "od/config.h"
#include "od/http.h"

typedef struct od_svc od_svc_t;
typedef void (*od_svc_drain_cb)(od_svc_t *svc, void *arg);

struct od_svc {
    uv_loop_t *loop;            /**< the service's one loop */
    const char *name;           /**< e.g. "outdial-dialer" */
    od_http_t *http;            /**< status (and, on ingress, API) server */
    od_http_t *metrics_http;    /**< /metrics alone, on OUTDIAL_METRICS_ADDR; NULL: /metrics is on `http` */
    const od_common_conf_t *common;
    uv_signal_t sig_term, sig_int;
    uv_timer_t drain_timer;
    od_svc_drain_cb on_drain;
    void *drain_arg;
    od_http_ready_fn ready;
    void *ready_arg;
    int draining;               /**< 1 after the first signal */
    int exit_code;
};

/**
 * Loads the configuration into `conf` (`common` points into it), handles
 * --help, initialises logging, the loop and the HTTP server with the status
 * routes. `max_entity` bounds HTTP request bodies. Returns 0, 1 if the
 * process should exit 0 (--help), or -1 after printing the error (exit 2).
 */
int od_svc_init(od_svc_t *svc, const char *name, int argc, char **argv, const char *usage,
                const od_conf_item_t *table, size_t n, void *conf, const od_common_conf_t *common,
                size_t max_entity);
/** Sets the /readyz check (while draining, /readyz always answers 503). */
void od_svc_set_ready(od_svc_t *svc, od_http_ready_fn ready, void *arg);
/** Sets the drain callback. */
void od_svc_on_drain(od_svc_t *svc, od_svc_drain_cb cb, void *arg);
/** Runs the loop until od_svc_done; returns the exit code. */
int od_svc_run(od_svc_t *svc);
/** Ends the service with `code` (0 after a clean drain). */
void od_svc_done(od_svc_t *svc, int code);

#endif
