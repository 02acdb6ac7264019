/*
 * The dialer as a whole: set-up, the call slots and backpressure, readiness
 * and the SIGTERM drain.
 */
#include "dialer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "od/core.h"
#include "od/log.h"

static const od_pg_stmt_t dialer_stmts[] = {
    {"claim", "SELECT od_claim($1::uuid, $2, $3::integer, $4::uuid)::text"},
    {"renew", "SELECT od_lease_renew($1, $2::uuid[], $3::integer)::text"},
    {"release", "SELECT od_lease_release($1, $2::uuid[])"},
};

unsigned dialer__backoff(unsigned *ms)
{
    *ms = *ms == 0 ? 100 : OD_MIN(*ms * 2, 5000u);
    return *ms;
}


/* ---- slots and backpressure ---- */

dcall_t *dialer__call_new(dialer_t *d, const char *id, od_ktoken_t tok)
{
    dcall_t *call = od_calloc(1, sizeof(*call));
    call->d = d;
    call->state = DCALL_CLAIMING;
    snprintf(call->id, sizeof(call->id), "%s", id);
    call->tok = tok;
    uv_timer_init(d->loop, &call->timer);
    call->timer.data = call;
    call->next = d->calls;
    if (d->calls != NULL)
        d->calls->prev = call;
    d->calls = call;
    d->ncalls++;
    od_metric_set(d->m.in_flight, d->ncalls);
    if (d->ncalls >= d->conf->max_calls && !d->paused) {
        d->paused = 1;
        od_kcons_pause(d->kcons);
        od_debug("%d calls in flight: consumer paused", d->ncalls);
    }
    return call;
}

static void on_call_closed(uv_handle_t *h)
{
    free(h->data);
}

static void drain_check(dialer_t *d);

void dialer__call_free(dcall_t *call)
{
    dialer_t *d = call->d;
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        d->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    d->ncalls--;
    od_metric_set(d->m.in_flight, d->ncalls);
    uv_close((uv_handle_t *)&call->timer, on_call_closed);
    json_decref(call->claim);
    free(call->recording);
    for (int i = 0; i < call->nev; i++)
        od_call_event_clear(&call->evq[i]);
    if (d->paused && !d->draining && d->ncalls < d->conf->max_calls) {
        d->paused = 0;
        od_kcons_resume(d->kcons);
        od_debug("%d calls in flight: consumer resumed", d->ncalls);
    }
    drain_check(d);
}

/* ---- readiness ---- */

/* Ready once PostgreSQL has a connection, the consumer exists and the
 * producer has not seen every broker go down (events must get out). An
 * assignment is not required: with more dialers than partitions an idle
 * member legitimately has none, and it is still a healthy spare. */
static int dialer_ready(void *arg, od_buf_t *why)
{
    dialer_t *d = arg;
    if (od_pg_ready(d->pg) == 0) {
        od_buf_puts(why, "postgresql: no connection ready");
        return 0;
    }
    if (d->kcons == NULL || d->kprod == NULL) {
        od_buf_puts(why, "kafka: not created");
        return 0;
    }
    if (!od_kprod_up(d->kprod)) {
        od_buf_puts(why, "kafka: producer sees no broker up");
        return 0;
    }
    return 1;
}

/* ---- drain ---- */

static void on_drain_finish(uv_timer_t *t)
{
    dialer_t *d = t->data;
    od_info("drain: every call finished; committing offsets and leaving the group");
    od_kcons_destroy(d->kcons);
    d->kcons = NULL;
    od_kprod_destroy(d->kprod, 5000);
    d->kprod = NULL;
    dialer__lease_close(d);
    d->provider->ops->destroy(d->provider);
    if (d->engine != NULL)
        dialer__engine_close(d->engine);
    od_pg_close(d->pg);
    uv_close((uv_handle_t *)&d->drain_check, NULL);
    od_svc_done(d->svc, 0);
}

static void drain_check(dialer_t *d)
{
    if (!d->draining || d->closing || d->ncalls > 0)
        return;
    d->closing = 1;
    /* out of the callback that freed the last slot: destroy blocks and closes things */
    uv_timer_start(&d->drain_check, on_drain_finish, 0, 0);
}

static void dialer_drain(od_svc_t *svc, void *arg)
{
    dialer_t *d = arg;
    (void)svc;
    d->draining = 1;
    od_kcons_pause(d->kcons);
    d->paused = 1;
    /* messages not yet claimed go back to the group (no done): another dialer
     * gets them. A claim whose query is out may have committed: its answer
     * decides (dial if claimed, else drop). */
    int dropped = 0;
    for (dcall_t *call = d->calls, *next; call != NULL; call = next) {
        next = call->next;
        if (call->state == DCALL_CLAIMING && !call->claim_inflight) {
            dialer__call_free(call);
            dropped++;
        }
    }
    od_info("drain: %d unclaimed messages handed back, %d calls in flight", dropped, d->ncalls);
    drain_check(d);
}

/* ---- set-up ---- */

static char *topic(const char *prefix, const char *name)
{
    od_buf_t b = OD_BUF_INIT;
    od_buf_printf(&b, "%s%s", prefix, name);
    return b.base;
}

/* The sip provider from OUTDIAL_SIP_*: the default trunk's password from the
 * environment or its file, the named trunks from OUTDIAL_SIP_TRUNKS_FILE. */
static provider_t *dialer__sip_provider(uv_loop_t *loop, const dialer_conf_t *conf, char *err, size_t errlen)
{
    static char password[512];
    char media_host[64] = "127.0.0.1";
    long media_port = 40000;
    const char *colon = strrchr(conf->sip_media, ':');
    if (colon == NULL || (size_t)(colon - conf->sip_media) >= sizeof(media_host) ||
        (media_port = strtol(colon + 1, NULL, 10)) <= 0 || media_port > 65535) {
        snprintf(err, errlen, "OUTDIAL_SIP_MEDIA \"%s\" is not ip:port", conf->sip_media);
        return NULL;
    }
    snprintf(media_host, sizeof(media_host), "%.*s", (int)(colon - conf->sip_media), conf->sip_media);
    snprintf(password, sizeof(password), "%s", conf->sip_password);
    if (conf->sip_password_file[0] != '\0') {
        char why[320];
        if (provider_sip_read_secret(conf->sip_password_file, password, sizeof(password), why, sizeof(why)) != 0) {
            snprintf(err, errlen, "OUTDIAL_SIP_PASSWORD_FILE %s", why);
            return NULL;
        }
    }
    if (strcmp(conf->sip_transport, "udp") != 0 && strcmp(conf->sip_transport, "tcp") != 0) {
        snprintf(err, errlen, "OUTDIAL_SIP_TRANSPORT \"%s\" is not udp or tcp", conf->sip_transport);
        return NULL;
    }
    provider_sip_trunk_t *trunks = NULL;
    size_t ntrunks = 0;
    if (conf->sip_trunks_file[0] != '\0' &&
        provider_sip_trunks_load(conf->sip_trunks_file, &trunks, &ntrunks, err, errlen) != 0)
        return NULL;
    provider_sip_conf_t sc = {
        .trunk = conf->sip_trunk, .tcp = strcmp(conf->sip_transport, "tcp") == 0, .bind = conf->sip_bind,
        .contact_host = conf->sip_contact_host,
        .username = conf->sip_username, .password = password, .realm = conf->sip_realm,
        .media_host = media_host, .media_port = media_port, .cps = conf->sip_cps,
        .max_concurrent = conf->sip_max_concurrent, .ring_timeout_ms = conf->sip_ring_timeout_s * 1000,
        .max_talk_ms = conf->sip_max_talk_s * 1000, .t1_ms = conf->sip_t1_ms,
        .trunks = trunks, .ntrunks = ntrunks,
    };
    provider_t *p = provider_sip_new(loop, &sc, err, errlen);
    provider_sip_trunks_free(trunks, ntrunks); /* the provider keeps copies */
    memset(password, 0, sizeof(password));
    return p;
}

dialer_t *dialer_new(od_svc_t *svc, const dialer_conf_t *conf)
{
    char err[512];
    dialer_t *d = od_calloc(1, sizeof(*d));
    d->svc = svc;
    d->conf = conf;
    d->loop = svc->loop;
    if (conf->dialer_id != NULL && conf->dialer_id[0] != '\0') {
        snprintf(d->dialer_id, sizeof(d->dialer_id), "%s", conf->dialer_id);
    } else {
        char host[48] = "dialer";
        gethostname(host, sizeof(host) - 1);
        snprintf(d->dialer_id, sizeof(d->dialer_id), "%s-%d", host, (int)getpid());
    }
    snprintf(d->lease_s_text, sizeof(d->lease_s_text), "%lld", (long long)conf->lease_s);
    d->topic_dispatch = topic(conf->common.topic_prefix, "calls.dispatch");
    d->topic_events = topic(conf->common.topic_prefix, "calls.events");

    d->m.in_flight = od_gauge("outdial_dialer_calls_in_flight", NULL, "calls from receipt of the dispatch to slot free");
    /* in flight / max: how full this dialer is (consumption pauses at 1) */
    od_metric_t *max = od_gauge("outdial_dialer_calls_max", NULL,
                                "OUTDIAL_DIALER_MAX_CALLS: calls this dialer handles at once");
    od_metric_set(max, (double)conf->max_calls);
    d->m.dials = od_counter("outdial_dialer_dials_total", NULL, "calls claimed and dialed");
    d->m.conflicts = od_counter("outdial_dialer_claim_conflicts_total", NULL,
                                "dispatch messages whose call was already claimed or canceled (not dialed)");
    d->m.paced = od_counter("outdial_dialer_paced_total", NULL,
                            "claims deferred by the project's pacing at the dial (asked again when the rate allows)");
    d->m.send_failures = od_counter("outdial_dialer_event_send_failures_total", NULL,
                                    "call events whose send or delivery failed (re-sent)");
    d->m.poison = od_counter("outdial_dialer_poison_messages_total", NULL, "malformed dispatch messages skipped");
    for (int f = OD_FINAL_NONE + 1; f < OD_FINAL_NSTATES; f++) {
        char labels[64];
        snprintf(labels, sizeof(labels), "final_state=\"%s\"", od_final_state_name((od_final_state_t)f));
        d->m.results[f] = od_counter("outdial_dialer_results_total", labels, "calls ended, by final state");
    }

    if (strcmp(conf->provider, "sim") == 0) {
        d->provider = provider_sim_new(d->loop, conf->sim_scale, conf->sim_dial_log, err, sizeof(err));
    } else if (strcmp(conf->provider, "sip") == 0) {
        d->provider = dialer__sip_provider(d->loop, conf, err, sizeof(err));
    } else {
        snprintf(err, sizeof(err), "unknown provider \"%s\" (known: sim, sip)", conf->provider);
        d->provider = NULL;
    }
    if (d->provider == NULL) {
        od_error("%s", err);
        return NULL;
    }
    if (conf->engine_url[0] != '\0' && (d->engine = dialer__engine_new(d, err, sizeof(err))) == NULL) {
        od_error("%s", err);
        return NULL;
    }

    /* the claim reads calling windows on this clock (021_claim.sql) */
    char options[80];
    snprintf(options, sizeof(options), "-c outdial.test_clock_offset_ms=%lld", (long long)conf->clock_offset_s * 1000);
    d->pg = od_pg_new_opts(d->loop, "dialer", conf->common.pg_dsn, conf->clock_offset_s != 0 ? options : NULL,
                           (int)conf->common.pg_conns, dialer_stmts, OD_ARRAY_SIZE(dialer_stmts));

    char client_id[128];
    snprintf(client_id, sizeof(client_id), "outdial-dialer-%s", d->dialer_id);
    d->kprod = od_kprod_new(d->loop, conf->common.kafka_brokers, client_id, NULL, err, sizeof(err));
    if (d->kprod == NULL) {
        od_error("kafka producer: %s", err);
        return NULL;
    }
    char *group = topic(conf->common.topic_prefix, "dialer");
    od_kcons_handlers_t handlers = {dialer__on_message, NULL, dialer__on_revoke};
    d->kcons = od_kcons_new(d->loop, conf->common.kafka_brokers, group, d->topic_dispatch, &handlers, d, NULL, err,
                            sizeof(err));
    free(group);
    if (d->kcons == NULL) {
        od_error("kafka consumer: %s", err);
        return NULL;
    }

    dialer__lease_init(d);
    uv_timer_init(d->loop, &d->drain_check);
    d->drain_check.data = d;
    od_svc_set_ready(svc, dialer_ready, d);
    od_svc_on_drain(svc, dialer_drain, d);
    od_info("dialer %s: %s -> %s, provider %s, at most %lld calls, lease %lld s", d->dialer_id, d->topic_dispatch,
            d->topic_events, d->provider->ops->name, (long long)conf->max_calls, (long long)conf->lease_s);
    return d;
}
