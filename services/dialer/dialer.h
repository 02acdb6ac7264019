/*
 * outdial-dialer: claims dispatched calls in PostgreSQL, dials them through a
 * provider, and reports their events to calls.events. Private header.
 *
 * Life of a call (one dcall_t per dispatch message, from receipt to slot free):
 *
 *   message ──► CLAIMING ──(od_claim NULL)──────────────────────────► freed (done; conflict)
 *                  │  ▲ PG unavailable: retry after backoff;
 *                  │  │ od_claim {"wait_ms"}: the project's rate at the dial, ask again then
 *                  │  └──┘
 *                  └─(claim committed; done)──► ACTIVE ──(ended)──► ENDED ──(final event
 *                                                 provider drives it      delivered)──► RELEASING ──► freed
 *                                                 events sent in order                 lease released
 *
 * Files: claim.c (consumer, claim), dial.c (provider callbacks, events to
 * Kafka), lease.c (renew and release), dialer.c (set-up, backpressure,
 * readiness, drain).
 */
#ifndef OD_DIALER_H
#define OD_DIALER_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "engine_report.h"
#include "od/call.h"
#include "od/kafka.h"
#include "od/metrics.h"
#include "od/pg.h"
#include "od/svc.h"
#include "provider.h"

typedef struct dialer_conf {
    od_common_conf_t common;
    int64_t max_calls;   /**< OUTDIAL_DIALER_MAX_CALLS */
    int64_t lease_s;     /**< OUTDIAL_DIALER_LEASE_S */
    int64_t clock_offset_s; /**< OUTDIAL_DIALER_TEST_CLOCK_OFFSET_S */
    char *dialer_id;     /**< OUTDIAL_DIALER_ID (empty: <hostname>-<pid>) */
    char *provider;      /**< OUTDIAL_DIALER_PROVIDER */
    double sim_scale;    /**< OUTDIAL_SIM_TIME_SCALE */
    char *sim_dial_log;  /**< OUTDIAL_SIM_DIAL_LOG */
    char *sip_trunk, *sip_bind, *sip_contact_host, *sip_username, *sip_password, *sip_password_file, *sip_realm;
    char *sip_transport; /**< OUTDIAL_SIP_TRANSPORT: udp or tcp */
    char *sip_media;     /**< OUTDIAL_SIP_MEDIA: "ip:port" */
    char *sip_trunks_file; /**< OUTDIAL_SIP_TRUNKS_FILE: the named trunks ("": none) */
    double sip_cps;
    int64_t sip_max_concurrent, sip_ring_timeout_s, sip_max_talk_s, sip_t1_ms;
    char *engine_url;          /**< OUTDIAL_ENGINE_URL ("": no conversation engine) */
    char *engine_token;        /**< OUTDIAL_ENGINE_TOKEN */
    char *engine_callback_url; /**< OUTDIAL_ENGINE_CALLBACK_URL */
    int64_t engine_timeout_ms; /**< OUTDIAL_ENGINE_TIMEOUT_MS */
} dialer_conf_t;

typedef enum dcall_state {
    DCALL_CLAIMING,  /**< claim query in flight or waiting to be retried (dialer->calls) */
    DCALL_ACTIVE,    /**< claimed and dialed; the provider drives it (dialer->calls) */
    DCALL_ENDED,     /**< the provider ended it; the final event is on its way (dialer->calls) */
    DCALL_RELEASING, /**< final event delivered; lease release pending (dialer->calls and dialer->release) */
} dcall_state_t;

#define DCALL_MAXEV 4 /* ringing, connected, final: events queued per call at most */

typedef struct dialer dialer_t;
typedef struct dialer_engine dialer_engine_t;
typedef struct dialer_engine_req dialer_engine_req_t;

/** Where a call's conversation engine session is (engine.c). */
typedef enum engine_phase {
    ENGINE_NONE,     /**< not answered, or no engine */
    ENGINE_STARTING, /**< the session is being opened */
    ENGINE_RUNNING,  /**< the engine has the call */
    ENGINE_ENDING,   /**< the call ended first; the end notice is out */
    ENGINE_OVER,     /**< no more requests: the report is in, or the session failed */
} engine_phase_t;

typedef struct dcall {
    dialer_t *d;
    struct dcall *prev, *next; /**< dialer->calls */
    dcall_state_t state;
    char id[37];
    char project_id[37];
    char claim_token[37];    /**< this attempt's token: a retried claim of the same attempt is recognised */
    od_ktoken_t tok;
    uv_timer_t timer;        /**< claim retry / event re-send backoff; closed before the struct is freed */
    unsigned backoff_ms;
    int claim_inflight;      /**< 1 while the claim query is out */
    int dropped;             /**< drain or revoke: give up the unclaimed message */
    provider_call_t *handle; /**< provider's call while ACTIVE */
    /* the lease (lease.c): this dialer may dial and keep the call only before lease_deadline_ms */
    int64_t lease_sent_ms;     /**< od_mono_ms when the claim or the renewal in flight was sent */
    int64_t lease_deadline_ms; /**< od_mono_ms by which the lease PostgreSQL holds has surely not run out */
    int renewing;              /**< in the renewal in flight */
    int lease_lost;            /**< the deadline passed or a renewal did not find it ours: hung up, ends internal_error */
    /* events of this call not yet delivered, in order; evq[0] is in flight when ev_inflight */
    od_call_event_t evq[DCALL_MAXEV];
    int nev;
    int ev_inflight;
    json_t *claim;           /**< the claim's data (scenario, metadata, ...) from dial to slot free */
    od_call_recording_t *recording; /**< the call's recording so far, or NULL: the engine's report's, else the
                                         provider's; owned, moved into the final event by dialer__end_call */
    struct {
        engine_phase_t phase;
        dialer_engine_req_t *req; /**< the request to the engine out, if any */
        char token[65];           /**< the session's report token */
        engine_report_t report;
        od_outcome_t outcome;
        int goal;
        int opted_out;            /**< the report said the callee opted out */
        char failed[256];         /**< why the session failed ("": it did not) */
        od_final_state_t final_state; /**< the provider's result, kept while ENDING */
        int64_t talk_ms;
        od_hangup_by_t hangup_by;
        char detail[256];
    } eng;
} dcall_t;

struct dialer {
    od_svc_t *svc;
    const dialer_conf_t *conf;
    uv_loop_t *loop;
    char dialer_id[64];
    char lease_s_text[16];
    char *topic_dispatch, *topic_events;
    od_pg_t *pg;
    od_kcons_t *kcons;
    od_kprod_t *kprod;
    provider_t *provider;
    dialer_engine_t *engine; /**< NULL without OUTDIAL_ENGINE_URL */

    dcall_t *calls; /**< every message from receipt to slot free */
    int ncalls;
    int paused;
    int draining;

    /* lease.c */
    uv_timer_t renew_timer;
    int renew_inflight;
    int64_t renew_sent_ms;
    uv_timer_t lease_watch;   /**< hangs up the calls whose lease deadline passed */
    uv_timer_t release_timer;
    dcall_t **release; /**< RELEASING calls in order; the first nreleasing are in the query in flight */
    int nrelease, caprelease;
    int nreleasing;
    unsigned release_backoff_ms;

    uv_timer_t drain_check;
    int closing;

    struct {
        od_metric_t *in_flight, *dials, *conflicts, *paced, *send_failures, *poison;
        od_metric_t *results[OD_FINAL_NSTATES];
    } m;
};

/* dialer.c */
/** Creates the dialer on svc's loop: PG pool, consumer, producer, provider. NULL on a fatal set-up error. */
dialer_t *dialer_new(od_svc_t *svc, const dialer_conf_t *conf);
/** Allocates a slot for a received message (counts toward max_calls; pauses the consumer at the limit). */
dcall_t *dialer__call_new(dialer_t *d, const char *id, od_ktoken_t tok);
/** Frees a slot (closes its timer first); resumes the consumer below the limit; finishes a drain. */
void dialer__call_free(dcall_t *call);
/** Backoff step: 100 ms doubling to 5 s. */
unsigned dialer__backoff(unsigned *ms);

/* claim.c */
/** Consumer handler: one calls.dispatch message. */
void dialer__on_message(void *arg, const rd_kafka_message_t *msg, od_ktoken_t tok);
/** Consumer handler: partitions revoked. */
void dialer__on_revoke(void *arg, const rd_kafka_topic_partition_list_t *parts);
/** Sends (or re-sends) the claim of `call`. */
void dialer__claim(dcall_t *call);

/* dial.c */
/** Dials a claimed call with the claim's data (JSON text from od_claim). */
void dialer__dial(dcall_t *call, const char *claim_json);

/** Ends a call with `res`: queues its final event, with the call's recording (else the provider's in `res`). */
void dialer__end_call(dcall_t *call, const provider_result_t *res);
/** Keeps a copy of `rec` as the call's recording, replacing the one it had. */
void dialer__keep_recording(dcall_t *call, const od_call_recording_t *rec);

/* engine.c */
/** Sets up the conversation engine client and the report route; NULL with `err` filled on a bad setting. */
dialer_engine_t *dialer__engine_new(dialer_t *d, char *err, size_t errlen);
/** Opens the engine session of an answered call (hangs it up if the engine will not take it). */
void dialer__engine_start(dcall_t *call);
/** The provider ended `call`: 0 if the engine has no part in it, else 1 and the engine ends it (now or later). */
int dialer__engine_ended(dcall_t *call, const provider_result_t *res);
/** Frees the engine client (every call has ended). */
void dialer__engine_close(dialer_engine_t *e);

/* lease.c */
void dialer__lease_init(dialer_t *d);
/** A claim committed: the call's lease runs from when the claim was sent (call->lease_sent_ms). */
void dialer__lease_claimed(dcall_t *call);
/**
 * 1 if the call may still be dialed: its lease deadline is more than a
 * safety margin away and no renewal found it lost. Never dial without it.
 */
int dialer__lease_held(dcall_t *call);
/** Queues the lease release of a call whose final event is delivered. */
void dialer__lease_release(dcall_t *call);
/** Stops the lease timers (drain finished). */
void dialer__lease_close(dialer_t *d);

#endif
