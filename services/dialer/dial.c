/*
 * A claimed call: dialed through the provider, its events sent to
 * calls.events (key = call id) strictly one after another: the next event is
 * produced only after the previous one's delivery report, so a failed
 * delivery re-sent after backoff can never land behind a newer event.
 * An event is never dropped. After the final event is in Kafka the lease is
 * released (lease.c) and the slot freed.
 */
#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "dialer.h"
#include "od/core.h"
#include "od/log.h"

static void send_head(dcall_t *call);

static void on_resend(uv_timer_t *t)
{
    send_head(t->data);
}

static void send_failed(dcall_t *call, const char *why)
{
    od_metric_add(call->d->m.send_failures, 1);
    unsigned ms = dialer__backoff(&call->backoff_ms);
    od_log(OD_LOG_WARN, call->id, "event %s not delivered (%s): re-sending in %u ms",
           od_call_status_name(call->evq[0].status), why, ms);
    uv_timer_start(&call->timer, on_resend, ms, 0);
}

static void on_delivery(void *arg, rd_kafka_resp_err_t err)
{
    dcall_t *call = arg;
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        send_failed(call, rd_kafka_err2str(err));
        return;
    }
    call->backoff_ms = 0;
    int final = od_call_status_final(call->evq[0].status);
    od_call_event_clear(&call->evq[0]);
    memmove(&call->evq[0], &call->evq[1], sizeof(call->evq[0]) * (size_t)(call->nev - 1));
    call->nev--;
    if (final) {
        assert(call->nev == 0);
        call->ev_inflight = 0;
        dialer__lease_release(call);
    } else if (call->nev > 0) {
        send_head(call);
    } else {
        call->ev_inflight = 0;
    }
}

/* Produces evq[0]. ev_inflight stays 1 from here until its delivery succeeds
 * (through any re-send backoff), so later events wait their turn. */
static void send_head(dcall_t *call)
{
    dialer_t *d = call->d;
    od_buf_t b = OD_BUF_INIT;
    call->ev_inflight = 1;
    od_call_event_encode(&call->evq[0], &b);
    int rc = od_kprod_send(d->kprod, d->topic_events, call->id, strlen(call->id), b.base, b.len, on_delivery, call);
    od_buf_free(&b);
    if (rc != 0)
        send_failed(call, rd_kafka_err2str((rd_kafka_resp_err_t)rc));
}

static od_call_event_t *push_event(dcall_t *call, od_call_status_t status, const char *detail)
{
    assert(call->nev < DCALL_MAXEV);
    od_call_event_t *ev = &call->evq[call->nev++];
    memset(ev, 0, sizeof(*ev));
    memcpy(ev->call_id, call->id, sizeof(ev->call_id));
    memcpy(ev->project_id, call->project_id, sizeof(ev->project_id));
    ev->status = status;
    ev->goal_completed = -1;
    ev->duration_ms = -1;
    ev->at_us = od_now_us();
    snprintf(ev->detail, sizeof(ev->detail), "%s", detail != NULL ? detail : "");
    snprintf(ev->dialer_id, sizeof(ev->dialer_id), "%s", call->d->dialer_id);
    return ev;
}

static void send_next(dcall_t *call)
{
    if (!call->ev_inflight)
        send_head(call);
}

void dialer__keep_recording(dcall_t *call, const od_call_recording_t *rec)
{
    if (call->recording == NULL)
        call->recording = od_malloc(sizeof(*call->recording));
    memcpy(call->recording, rec, sizeof(*rec));
}

/* The call ended (provider, or a failure before dialing): queue its final event. */
void dialer__end_call(dcall_t *call, const provider_result_t *res)
{
    dialer_t *d = call->d;
    provider_result_t lost;
    if (call->lease_lost && res->final_state != OD_FINAL_INTERNAL_ERROR) {
        /* hung up because the lease was lost: the reaper fails it as internal_error, and so do we */
        lost = (provider_result_t){.final_state = OD_FINAL_INTERNAL_ERROR, .goal_completed = -1,
                                   .detail = "dialer: the call's lease was lost (PostgreSQL unreachable); hung up",
                                   .component = "dialer", .recording = res->recording};
        res = &lost;
    }
    call->state = DCALL_ENDED;
    call->handle = NULL;
    od_call_event_t *ev = push_event(call, od_final_state_status(res->final_state), res->detail);
    ev->final_state = res->final_state;
    if (res->final_state == OD_FINAL_COMPLETED) {
        ev->outcome = res->outcome;
        ev->goal_completed = res->goal_completed;
        ev->duration_ms = res->talk_ms;
        ev->opted_out = res->opted_out;
        ev->hangup_by = res->hangup_by;
    } else {
        ev->goal_completed = res->goal_completed;
        ev->duration_ms = 0;
    }
    if (res->final_state == OD_FINAL_INTERNAL_ERROR)
        snprintf(ev->component, sizeof(ev->component), "%s", res->component ? res->component : "provider");
    if (call->recording == NULL && res->recording != NULL)
        dialer__keep_recording(call, res->recording);
    ev->recording = call->recording; /* the event owns it now */
    call->recording = NULL;
    od_metric_add(d->m.results[res->final_state], 1);
    od_log(OD_LOG_INFO, call->id, "ended: %s%s%s, talk %lld ms%s (%s)", od_final_state_name(res->final_state),
           ev->outcome != OD_OUTCOME_NONE ? " " : "", ev->outcome != OD_OUTCOME_NONE ? od_outcome_name(ev->outcome) : "",
           (long long)ev->duration_ms, ev->recording != NULL ? ", recorded" : "", res->detail);
    send_next(call);
}

/* ---- provider callbacks ---- */

static void on_ringing(void *arg)
{
    dcall_t *call = arg;
    od_log(OD_LOG_DEBUG, call->id, "ringing");
    push_event(call, OD_CALL_DIALING, "ringing");
    send_next(call);
}

static void on_answered(void *arg)
{
    dcall_t *call = arg;
    od_log(OD_LOG_DEBUG, call->id, "answered");
    push_event(call, OD_CALL_CONNECTED, "answered");
    send_next(call);
    if (call->d->engine != NULL)
        dialer__engine_start(call);
}

static void on_machine(void *arg)
{
    dcall_t *call = arg;
    od_log(OD_LOG_INFO, call->id, "answering machine detected");
}

static void on_ended(void *arg, const provider_result_t *res)
{
    dcall_t *call = arg;
    call->handle = NULL;
    if (call->d->engine == NULL || !dialer__engine_ended(call, res))
        dialer__end_call(call, res);
}

static int on_may_dial(void *arg)
{
    dcall_t *call = arg;
    int ok = dialer__lease_held(call);
    if (!ok)
        od_log(OD_LOG_WARN, call->id, "not dialed: its lease can no longer be proven (it waited past it)");
    return ok;
}

static const provider_cbs_t dial_cbs = {on_ringing, on_answered, on_machine, on_ended, on_may_dial};

static const char *str_or_null(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

void dialer__dial(dcall_t *call, const char *claim_json)
{
    dialer_t *d = call->d;
    char err[256] = "";
    call->state = DCALL_ACTIVE;
    call->backoff_ms = 0;
    od_metric_add(d->m.dials, 1);

    json_error_t jerr;
    json_t *claim = json_loads(claim_json, 0, &jerr);
    const char *project_id = claim != NULL ? str_or_null(claim, "project_id") : NULL;
    const char *phone = claim != NULL ? str_or_null(claim, "phone") : NULL;
    if (project_id != NULL)
        snprintf(call->project_id, sizeof(call->project_id), "%s", project_id);
    if (project_id == NULL || phone == NULL || od_uuid_check(call->project_id, strlen(call->project_id)) != 0) {
        /* claimed but unusable: end it now rather than leave it to the reaper */
        od_log(OD_LOG_ERROR, call->id, "claim result unusable: %s", claim_json);
        json_decref(claim);
        /* the event needs a project id; the outcome service matches on the call id */
        snprintf(call->project_id, sizeof(call->project_id), "00000000-0000-0000-0000-000000000000");
        provider_result_t res = {.final_state = OD_FINAL_INTERNAL_ERROR, .goal_completed = -1,
                                 .detail = "dialer: claim result unusable", .component = "dialer"};
        dialer__end_call(call, &res);
        return;
    }

    if (!dialer__lease_held(call)) {
        /* the claim's answer came too late (PostgreSQL slow or cut off): the reaper may already own it */
        od_log(OD_LOG_WARN, call->id, "not dialed: its lease ran out before the claim's answer was read");
        json_decref(claim);
        provider_result_t res = {.final_state = OD_FINAL_INTERNAL_ERROR, .goal_completed = -1,
                                 .detail = "dialer: the call's lease ran out before it could be dialed",
                                 .component = "dialer"};
        dialer__end_call(call, &res);
        return;
    }
    provider_req_t req = {
        .call_id = call->id,
        .project_id = call->project_id,
        .phone = phone,
        .scenario = str_or_null(claim, "scenario"),
        .caller_id = str_or_null(claim, "caller_id"),
        .disclosure = str_or_null(claim, "disclosure"),
        .metadata = json_object_get(claim, "metadata"),
    };
    /* the callee's number is personal data: at info level the call id says which call it is */
    od_log(OD_LOG_INFO, call->id, "dialing (scenario %s, caller id %s)", req.scenario ? req.scenario : "-",
           req.caller_id ? req.caller_id : "-");
    od_log(OD_LOG_DEBUG, call->id, "dialing %s", phone);
    int rc = d->provider->ops->dial(d->provider, &req, &dial_cbs, call, &call->handle, err, sizeof(err));
    call->claim = claim; /* the engine session needs it after answer */
    if (rc != 0) {
        provider_result_t res = {.final_state = OD_FINAL_PROVIDER_ERROR, .goal_completed = -1, .detail = err};
        dialer__end_call(call, &res);
    }
}
