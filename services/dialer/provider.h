/*
 * The telephony provider interface (DESIGN §4): a vtable the dialer drives
 * asynchronously on its loop.
 *
 *   dial() ──► [setup] ──► ringing() ──► [ring] ──► answered() ──► [talk] ──► ended()
 *                 │                         │                         │
 *                 └──► ended()              └──► ended()              └──► machine_detected() ──► ended()
 *                 (busy, invalid number,    (no answer)               (voicemail)
 *                  caller id refused, error)
 *
 * Rules, libuv-style:
 *  - dial() never calls a callback from inside itself; every callback runs
 *    later from the loop, in the order drawn above.
 *  - ended() is called exactly once per successful dial(), and is the last
 *    callback; the handle is invalid once ended() returns (the provider frees it).
 *  - If dial() fails it returns a negative code, fills `errstr`, and never
 *    calls any callback.
 *
 * After answer the dialer hands the session to the conversation engine
 * (engine.c, proto/engine.md) with the media endpoints of media(); the
 * engine's report decides the outcome. The `sim` provider plays both parts
 * when no engine is configured.
 */
#ifndef OD_DIALER_PROVIDER_H
#define OD_DIALER_PROVIDER_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "od/call.h"

typedef struct provider provider_t;
typedef struct provider_call provider_call_t; /**< one dialed call, owned by the provider */

/** What to dial: the data of the claim. All borrowed for the duration of dial() only. */
typedef struct provider_req {
    const char *call_id;
    const char *project_id; /**< the call's project (UUID), or NULL; the sip provider picks a trunk by it */
    const char *phone;      /**< E.164 */
    const char *scenario;   /**< scenario IDN the conversation engine runs */
    const char *caller_id;  /**< verified caller ID to present, or NULL */
    const char *disclosure; /**< AI-disclosure text to play first, or NULL */
    const json_t *metadata; /**< the call's metadata object, or NULL */
} provider_req_t;

/** How a call ended (argument of ended()). */
typedef struct provider_result {
    od_final_state_t final_state; /**< never OD_FINAL_NONE */
    od_outcome_t outcome;         /**< completed calls only, else OD_OUTCOME_NONE */
    int goal_completed;           /**< completed calls: 0 or 1; else -1 (unknown) */
    int64_t talk_ms;              /**< talk time of completed calls; 0 for failures */
    const char *detail;           /**< cause in words (SIP code and reason, ...); never NULL */
    int opted_out;                /**< completed calls: the callee asked not to be called again (the engine's word) */
    const char *component;        /**< internal_error: what failed ("dialer", "engine"); NULL: "provider" */
    const od_call_recording_t *recording; /**< the provider's recording of the call, or NULL; borrowed for ended() */
    od_hangup_by_t hangup_by;     /**< completed calls: who hung up (the callee's BYE, or ours) */
} provider_result_t;

/** Callbacks of one call; `arg` is the dialer's per-call pointer given to dial(). */
typedef struct provider_cbs {
    void (*ringing)(void *arg);          /**< the far end is ringing */
    void (*answered)(void *arg);         /**< answered: the conversation (or a machine) is on the line */
    void (*machine_detected)(void *arg); /**< the answer was a voicemail box / machine; ended() follows */
    void (*ended)(void *arg, const provider_result_t *res); /**< final; the handle is gone after this */
    /**
     * Asked right before the call is placed (the INVITE sent), after any wait
     * in a trunk's queue: 1 if it may still be, 0 if not (the dialer can no
     * longer prove it holds the call's lease). On 0 the provider places
     * nothing and ends the call (ended() with internal_error). NULL: always 1.
     */
    int (*may_dial)(void *arg);
} provider_cbs_t;

/** Where the audio of an answered call flows (the session's media endpoints, for the conversation engine). */
typedef struct provider_media {
    const char *local_host;  /**< the conversation engine's media address we offered */
    int local_port;
    const char *remote_host; /**< the callee's side, from the answer ("" when it gave none) */
    int remote_port;
    const char *codec;       /**< the first codec of the answer, "PCMU", "PCMA" or the payload number ("" when none) */
} provider_media_t;

typedef struct provider_ops {
    const char *name;
    /**
     * Places a call. On success returns 0 and sets *handle; the callbacks
     * (`cbs` is borrowed and must outlive the call) then run as drawn above.
     * On failure returns < 0 with `errstr` filled and calls nothing.
     */
    int (*dial)(provider_t *p, const provider_req_t *req, const provider_cbs_t *cbs, void *arg,
                provider_call_t **handle, char *errstr, size_t errlen);
    /** Hangs up a call not yet ended; ended() follows later from the loop. */
    void (*hangup)(provider_call_t *h);
    /** The media endpoints of an answered call, valid until ended(); NULL op or NULL result: none (sim). */
    const provider_media_t *(*media)(provider_call_t *h);
    /**
     * Frees the provider. Calls still in progress are dropped without any
     * further callback. Handles are closed asynchronously: run the loop after.
     */
    void (*destroy)(provider_t *p);
} provider_ops_t;

/** Every provider starts with this. */
struct provider {
    const provider_ops_t *ops;
    uv_loop_t *loop;
};

/* ---- sim (provider_sim.c) ---- */

/** The plan the sim follows for one call: the digit table and the time math. */
typedef struct provider_sim_plan {
    int digit;                    /**< the last digit of the phone (-1: none → provider_error) */
    od_final_state_t final_state; /**< how it ends */
    od_outcome_t outcome;         /**< completed calls only */
    int goal_completed;           /**< completed: 0/1; else -1 */
    int rings;                    /**< 1 if ringing() is reported (after setup_ms) */
    int answers;                  /**< 1 if answered() is reported (after ring_ms) */
    int machine;                  /**< 1 if machine_detected() is reported (after talk_ms) */
    uint64_t setup_ms;            /**< dial → ringing (or → ended when it does not ring) */
    uint64_t ring_ms;             /**< ringing → answered (or → ended: no answer) */
    uint64_t talk_ms;             /**< answered → ended (or → machine detected) */
    const char *detail;           /**< the detail of ended() */
    od_recording_kind_t recording; /**< answered calls report a recording of this kind (0: none) */
} provider_sim_plan_t;

/**
 * Computes the plan of a call to `phone`: the last digit picks the result
 * (DESIGN §4), base times are multiplied by `scale`, metadata `sim_ring_ms` /
 * `sim_talk_ms` (number or numeric string, absolute ms, not scaled) override
 * the ring and talk phases; metadata `sim_recording` (true, 1, "true", "1"
 * or "url": a URL; "object_key": an object key) makes an answered call
 * report a recording.
 */
void provider_sim_plan(const char *phone, const json_t *metadata, double scale, provider_sim_plan_t *plan);

/**
 * Creates the sim provider on `loop`. `dial_log` (may be NULL) is a file that
 * gets one line `<rfc3339 time> <call_id> <phone>\n` per dial, appended with
 * one write() when the dial is placed, before any callback. Returns NULL with
 * `errstr` filled if the log can't be opened.
 */
provider_t *provider_sim_new(uv_loop_t *loop, double time_scale, const char *dial_log, char *errstr, size_t errlen);

/* ---- sip (provider_sip.c, docs/sip.md) ---- */

/**
 * One SIP trunk: where calls go and the carrier's limits and credentials
 * (docs/sip.md, Trunks). Strings and arrays are borrowed by
 * provider_sip_new(), which copies them.
 */
typedef struct provider_sip_trunk {
    const char *name;         /**< for logs and errors ("default": the OUTDIAL_SIP_* trunk) */
    const char *address;      /**< "ip:port" (5060 when no port) */
    int tcp;                  /**< 1: every request over TCP ("tcp"); 0: UDP, and TCP for a request over 1300 bytes */
    const char *username;     /**< digest credentials ("": none) */
    const char *password;     /**< never logged */
    const char *realm;        /**< "": the challenge's */
    double cps;               /**< INVITEs per second toward the trunk */
    int64_t max_concurrent;   /**< calls at once on the trunk (queued beyond) */
    char **projects;          /**< project UUIDs (lower case) whose calls take this trunk */
    size_t nprojects;
    char **caller_ids;        /**< E.164 caller IDs whose calls take this trunk (before projects) */
    size_t ncaller_ids;
} provider_sip_trunk_t;

/** The SIP user agent's settings (OUTDIAL_SIP_*) and its trunks. */
typedef struct provider_sip_conf {
    const char *trunk;        /**< the default trunk's "ip:port" (5060 when no port); NULL or "": no default trunk */
    int tcp;                  /**< the default trunk's transport: 1 TCP, 0 UDP (see provider_sip_trunk_t) */
    const char *bind;         /**< local "ip:port" of the UDP socket (port 0: any) */
    const char *contact_host; /**< the address put in Via and Contact ("": the bind address, 127.0.0.1 for 0.0.0.0) */
    const char *username;     /**< the default trunk's digest credentials ("": none) */
    const char *password;
    const char *realm;        /**< "": the challenge's */
    const char *media_host;   /**< the conversation engine's media address, offered in the SDP */
    int64_t media_port;
    double cps;               /**< INVITEs per second toward the default trunk */
    int64_t max_concurrent;   /**< calls at once on the default trunk (queued beyond) */
    int64_t ring_timeout_ms;  /**< INVITE sent → CANCEL when not answered */
    int64_t max_talk_ms;      /**< answered → BYE (0: no limit) */
    int64_t t1_ms;            /**< RFC 3261 T1 (Timer A starts at T1, Timers B and F are 64 × T1) */
    const provider_sip_trunk_t *trunks; /**< the named trunks (OUTDIAL_SIP_TRUNKS_FILE), selected per call */
    size_t ntrunks;
} provider_sip_conf_t;

/** Creates the sip provider on `loop`; NULL with `errstr` filled when the settings are wrong or the socket fails. */
provider_t *provider_sip_new(uv_loop_t *loop, const provider_sip_conf_t *conf, char *errstr, size_t errlen);

/** The local UDP port of a sip provider (OUTDIAL_SIP_BIND with port 0 picks one). */
int provider_sip_port(const provider_t *p);

/* ---- sip over a stream (sip_frame.c) ---- */

#define SIP_TCP_MAX (64 * 1024) /**< a message on a TCP connection larger than this closes it */

/**
 * The first message in the stream bytes [p, p + n): skips the CRLFs before
 * it (*skip), then returns 1 with its length in *len (header block and
 * Content-Length body), 0 when it is not whole yet, or -1 with `why` when the
 * stream is unusable (a header block over SIP_TCP_MAX, no valid
 * Content-Length, a body over SIP_TCP_MAX).
 */
int provider_sip_frame(const char *p, size_t n, size_t *skip, size_t *len, const char **why);

/* ---- sip trunks (sip_trunks.c, docs/sip.md "Trunks") ---- */

/**
 * Reads the trunks file (OUTDIAL_SIP_TRUNKS_FILE) into *trunks (an array of
 * *ntrunks, owned by the caller: free with provider_sip_trunks_free). Each
 * trunk's password comes from the environment variable of its `password_env`
 * or the first line of its `password_file`. Returns 0, or -1 with one line
 * in `errstr` naming the file and the trunk, and never a password.
 */
int provider_sip_trunks_load(const char *path, provider_sip_trunk_t **trunks, size_t *ntrunks, char *errstr,
                             size_t errlen);

/** Frees what provider_sip_trunks_load() returned (NULL is fine). */
void provider_sip_trunks_free(provider_sip_trunk_t *trunks, size_t ntrunks);

/**
 * The trunk of a call: the one listing its caller ID, else the one listing
 * its project, else -1 (the default trunk, if there is one). Either may be NULL.
 */
int provider_sip_trunk_select(const provider_sip_trunk_t *trunks, size_t ntrunks, const char *project_id,
                              const char *caller_id);

/**
 * The first line of the file at `path` (without its line end) into `out`:
 * a secret such as a password. Returns 0, or -1 with `errstr` filled (the
 * path and the system's reason, never the content).
 */
int provider_sip_read_secret(const char *path, char *out, size_t outlen, char *errstr, size_t errlen);

/**
 * "ip:port" (IPv4, or [IPv6]:port) to an address; the port is `dport` when
 * absent. `host` (may be NULL) gets the IP as written. 0, or -1 when it is
 * not an IP address and port (names are not resolved).
 */
int provider_sip__hostport(const char *s, int dport, struct sockaddr_storage *out, char *host, size_t hostlen,
                           int *port);

#endif
