/*
 * The call: its statuses, final states, the forward-only state machine and
 * the Kafka messages that carry it between services (proto/messages/).
 *
 *                +-----------> canceled (final: canceled | dnc_blocked)
 *                |  +--------> failed   (final: no_answer, busy, ...)
 *                |  |
 *   queued --> dialing --> connected --> completed (final: completed)
 *
 * Statuses only move forward along the arrows (or to failed / canceled from
 * any status that is not final); a late or duplicate event is ignored.
 */
#ifndef OD_CALL_H
#define OD_CALL_H

#include <stdint.h>

#include "od/buf.h"

typedef enum od_call_status {
    OD_CALL_QUEUED,    /**< accepted; waits for its due time and pacing (scheduler's heap; calls row, status 'queued') */
    OD_CALL_DIALING,   /**< claimed by one dialer under a lease; the provider is dialing or ringing */
    OD_CALL_CONNECTED, /**< answered; the conversation engine has the session */
    OD_CALL_COMPLETED, /**< final: the conversation ended (final_state completed) */
    OD_CALL_FAILED,    /**< final: no conversation (final_state says why) */
    OD_CALL_CANCELED,  /**< final: canceled by the customer, or dnc_blocked at dispatch */
    OD_CALL_NSTATUS
} od_call_status_t;

typedef enum od_final_state {
    OD_FINAL_NONE = 0,
    OD_FINAL_COMPLETED,
    OD_FINAL_NO_ANSWER,
    OD_FINAL_BUSY,
    OD_FINAL_VOICEMAIL_DETECTED,
    OD_FINAL_INVALID_NUMBER,
    OD_FINAL_CALLER_ID_UNAUTHORIZED,
    OD_FINAL_PROVIDER_ERROR,
    OD_FINAL_INTERNAL_ERROR,
    OD_FINAL_CANCELED,
    OD_FINAL_DNC_BLOCKED,
    OD_FINAL_NSTATES
} od_final_state_t;

typedef enum od_outcome {
    OD_OUTCOME_NONE = 0,
    OD_OUTCOME_SUCCESS,
    OD_OUTCOME_MIDDLE,
    OD_OUTCOME_SPAM,
} od_outcome_t;

/** Who ended a completed call (the short hang-up signal of the caller reputation, docs/reputation.md). */
typedef enum od_hangup_by {
    OD_HANGUP_UNKNOWN = 0, /**< not a completed call, or the provider cannot tell */
    OD_HANGUP_CALLEE,      /**< the callee hung up (sip: the callee's BYE; sim: the talk time ran out) */
    OD_HANGUP_US,          /**< we did: the conversation engine's report, the talk limit, hangup() */
} od_hangup_by_t;

/** API name of a status ("queued", ...). */
const char *od_call_status_name(od_call_status_t s);
/** Status for a name, or -1. */
int od_call_status_parse(const char *name);
/** API name of a final state ("no_answer", ...); NULL for OD_FINAL_NONE. */
const char *od_final_state_name(od_final_state_t f);
/** Final state for a name, or -1. */
int od_final_state_parse(const char *name);
/** API name of an outcome; NULL for none. */
const char *od_outcome_name(od_outcome_t o);
/** Outcome for a name, or -1. */
int od_outcome_parse(const char *name);
/** Message name of who hung up ("callee", "us"); NULL for OD_HANGUP_UNKNOWN. */
const char *od_hangup_by_name(od_hangup_by_t h);
/** Who hung up for a name, or -1. */
int od_hangup_by_parse(const char *name);
/** The status a final state ends in (completed → completed; canceled, dnc_blocked → canceled; else failed). */
od_call_status_t od_final_state_status(od_final_state_t f);
/** 1 if `s` is final. */
int od_call_status_final(od_call_status_t s);
/** 1 if the state machine allows from → to. */
int od_call_can_move(od_call_status_t from, od_call_status_t to);
/**
 * The statuses a call may be in to move to `to`, as a PostgreSQL array
 * literal ("{queued,dialing}"): the compare-and-set condition of the update.
 */
const char *od_call_allowed_from(od_call_status_t to);

/** The longest recording URL or object key taken, in bytes (a longer one is refused where it is reported). */
#define OD_RECORDING_REF_MAX 2048

typedef enum od_recording_kind {
    OD_RECORDING_URL = 1,    /**< ref is an http(s) URL where the recording can be fetched */
    OD_RECORDING_OBJECT_KEY, /**< ref is a key in the customer's object storage */
} od_recording_kind_t;

/**
 * A call's recording as the conversation engine (or the provider) reported it
 * (proto/engine.md): where it is, how long it is, its checksum.
 */
typedef struct od_call_recording {
    od_recording_kind_t kind;
    char ref[OD_RECORDING_REF_MAX + 1]; /**< the URL or the object key (never empty) */
    int64_t duration_ms;                /**< >= 0 */
    char sha256[65];                    /**< the SHA-256 of the recording's bytes: 64 lower-case hex digits */
} od_call_recording_t;

struct json_t;

/**
 * Reads a recording object {"url" | "object_key", "duration_ms", "sha256"}
 * (exactly one of url and object_key; a url is http:// or https://; neither
 * longer than OD_RECORDING_REF_MAX bytes nor with control characters or
 * spaces in a url; duration_ms an integer >= 0; sha256 64 hex digits, kept
 * lower-case). Other members are ignored. Returns 0, or -1 with `*field` the
 * member at fault ("recording", "recording.url", ...) and `*msg` why.
 */
int od_call_recording_parse(const struct json_t *obj, od_call_recording_t *rec, const char **field,
                            const char **msg);

/** Appends the recording as a JSON object (the form od_call_recording_parse reads). */
void od_call_recording_encode(const od_call_recording_t *rec, od_buf_t *out);

/** An event about a call (topic calls.events; proto/messages/call_event.schema.json). */
typedef struct od_call_event {
    char call_id[37];
    char project_id[37];
    od_call_status_t status;  /**< status the call moves to (dialing for a 'ringing' detail) */
    od_final_state_t final_state;
    od_outcome_t outcome;
    int goal_completed;        /**< -1 unknown, 0, 1 */
    int64_t at_us;             /**< when it happened (dialer clock) */
    int64_t duration_ms;       /**< talk time, for completed calls; -1 unknown */
    int opted_out;             /**< 1: the callee asked not to be called again (the engine's report): onto the DNC list */
    od_hangup_by_t hangup_by;  /**< completed calls: who hung up */
    char detail[256];          /**< free text: "ringing", SIP code and reason, error */
    char component[16];        /**< internal_error only: what failed, "dialer", "provider" or "engine" */
    char dialer_id[64];
    od_call_recording_t *recording; /**< final events: the call's recording, or NULL; owned by the event
                                         (od_call_event_clear frees it), allocated by od_call_event_decode */
} od_call_event_t;

/** Appends the event as a JSON message. */
void od_call_event_encode(const od_call_event_t *ev, od_buf_t *out);
/**
 * Parses a message; returns 0 or -1 with `errstr` filled (the message is then
 * dropped as poison). A recording that does not parse is left out (NULL), not
 * worth losing the final state for. On 0 the caller owns ev->recording: free
 * it with od_call_event_clear.
 */
int od_call_event_decode(const char *json, size_t len, od_call_event_t *ev, char *errstr, size_t errlen);
/** Frees what the event owns (its recording) and sets it to NULL. */
void od_call_event_clear(od_call_event_t *ev);

#endif
