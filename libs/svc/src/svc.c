#include "od/svc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/log.h"

static int svc_ready(void *arg, od_buf_t *why)
{
    od_svc_t *svc = arg;
    if (svc->draining) {
        od_buf_puts(why, "draining");
        return 0;
    }
    return svc->ready == NULL || svc->ready(svc->ready_arg, why);
}

static void on_drain_timeout(uv_timer_t *t)
{
    od_svc_t *svc = t->data;
    od_warn("drain did not finish within %lld s; exiting", (long long)svc->common->drain_s);
    od_svc_done(svc, 1);
}

static void on_signal(uv_signal_t *h, int signum)
{
    od_svc_t *svc = h->data;
    if (svc->draining) {
        od_warn("second signal %d: exiting now", signum);
        od_svc_done(svc, 1);
        return;
    }
    svc->draining = 1;
    od_info("signal %d: draining (at most %lld s)", signum, (long long)svc->common->drain_s);
    uv_timer_start(&svc->drain_timer, on_drain_timeout, (uint64_t)svc->common->drain_s * 1000, 0);
    if (svc->on_drain != NULL)
        svc->on_drain(svc, svc->drain_arg);
    else
        od_svc_done(svc, 0);
}

int od_svc_init(od_svc_t *svc, const char *name, int argc, char **argv, const char *usage,
                const od_conf_item_t *table, size_t n, void *conf, const od_common_conf_t *common,
                size_t max_entity)
{
    char err[512];
    memset(svc, 0, sizeof(*svc));
    int rc = od_config_args(argc, argv, usage, table, n);
    if (rc != 0)
        return rc;
    if (od_config_load(table, n, conf, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        return -1;
    }
    svc->name = name;
    svc->common = common;
    od_log_init(name, common->log_level);
    svc->loop = uv_default_loop();
    svc->http = od_http_new(svc->loop, common->http_host, (int)common->http_port, max_entity, err, sizeof(err));
    if (svc->http == NULL) {
        od_error("%s", err);
        return -1;
    }
    if (common->metrics_addr[0] == '\0') {
        od_http_status_routes(svc->http, svc_ready, svc);
    } else {
        /* host:port; the last colon splits them ("[::1]" is not taken: loopback is 127.0.0.1 here) */
        char host[256];
        const char *colon = strrchr(common->metrics_addr, ':');
        char *end;
        long port = colon != NULL ? strtol(colon + 1, &end, 10) : -1;
        if (colon == NULL || colon == common->metrics_addr || (size_t)(colon - common->metrics_addr) >= sizeof(host) ||
            colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535) {
            od_error("OUTDIAL_METRICS_ADDR: \"%s\" is not host:port", common->metrics_addr);
            return -1;
        }
        memcpy(host, common->metrics_addr, (size_t)(colon - common->metrics_addr));
        host[colon - common->metrics_addr] = '\0';
        od_http_health_routes(svc->http, svc_ready, svc);
        svc->metrics_http = od_http_new(svc->loop, host, (int)port, 1024, err, sizeof(err));
        if (svc->metrics_http == NULL) {
            od_error("OUTDIAL_METRICS_ADDR: %s", err);
            return -1;
        }
        od_http_metrics_route(svc->metrics_http);
        od_info("metrics on %s:%d", host, od_http_port(svc->metrics_http));
    }
    uv_signal_init(svc->loop, &svc->sig_term);
    uv_signal_init(svc->loop, &svc->sig_int);
    svc->sig_term.data = svc->sig_int.data = svc;
    uv_signal_start(&svc->sig_term, on_signal, SIGTERM);
    uv_signal_start(&svc->sig_int, on_signal, SIGINT);
    uv_timer_init(svc->loop, &svc->drain_timer);
    svc->drain_timer.data = svc;
    uv_unref((uv_handle_t *)&svc->drain_timer);
    od_info("listening on %s:%d", common->http_host, od_http_port(svc->http));
    return 0;
}

void od_svc_set_ready(od_svc_t *svc, od_http_ready_fn ready, void *arg)
{
    svc->ready = ready;
    svc->ready_arg = arg;
}

void od_svc_on_drain(od_svc_t *svc, od_svc_drain_cb cb, void *arg)
{
    svc->on_drain = cb;
    svc->drain_arg = arg;
}

int od_svc_run(od_svc_t *svc)
{
    uv_run(svc->loop, UV_RUN_DEFAULT);
    return svc->exit_code;
}

void od_svc_done(od_svc_t *svc, int code)
{
    od_info("exiting with code %d", code);
    svc->exit_code = code;
    /* handles of h2o connections and librdkafka are not all ours to close:
     * stop the loop and leave the rest to process exit */
    uv_stop(svc->loop);
}
