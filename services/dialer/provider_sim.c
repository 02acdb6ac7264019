/*
 * The `sim` provider (DESIGN §4): deterministic calls whose last phone digit
 * decides the result, with realistic durations scaled by
 * OUTDIAL_SIM_TIME_SCALE. It plays the conversation engine too: connected
 * calls report the outcome and goal of the digit table.
 *
 * Base times (ms, before scaling):
 *
 *   digit  result                          setup   ring    talk    callbacks
 *   0      completed, success, goal true     500   4000   25000    ringing, answered, ended
 *   1      completed, success, goal false    500   4000   25000    ringing, answered, ended
 *   2      completed, middle, goal false     500   4000   25000    ringing, answered, ended
 *   3      completed, spam, goal false       500   4000   25000    ringing, answered, ended
 *   4      no_answer                         500  30000       -    ringing, ended
 *   5      busy                             1500      -       -    ended
 *   6      voicemail_detected                500   5000    3000    ringing, answered, machine_detected, ended
 *   7      invalid_number                    800      -       -    ended
 *   8      caller_id_unauthorized            800      -       -    ended
 *   9      provider_error                   1200      -       -    ended
 *
 * setup = dial → ringing (or → ended for calls that never ring); ring =
 * ringing → answered (or → ended: no answer); talk = answered → ended (for 6:
 * answered → machine detected, which ends the call at once).
 * Metadata `sim_ring_ms` overrides the ring phase (digits 0-4, 6) and
 * `sim_talk_ms` the talk phase (digits 0-3), in absolute ms, not scaled.
 * Metadata `sim_recording` makes an answered call (digits 0-3, 6) report a
 * recording, as a provider or engine that records calls would:
 * https://sim.outdial.invalid/recordings/<call id>.wav (true, 1, "true", "1",
 * "url") or the object key sim/recordings/<call id>.wav ("object_key"), as
 * long as the call was answered, with the SHA-256 of the call id (the sim has
 * no audio). A phone without a final digit ends as provider_error.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "od/core.h"
#include "od/log.h"
#include "od/rfc3339.h"
#include "provider.h"

/* the longest override honoured: a day */
#define SIM_MAX_OVERRIDE_MS (24ULL * 3600 * 1000)

typedef struct sim_row {
    od_final_state_t final_state;
    od_outcome_t outcome;
    int goal_completed;
    int rings, answers, machine;
    unsigned setup_ms, ring_ms, talk_ms;
    const char *detail;
} sim_row_t;

static const sim_row_t sim_table[10] = {
    {OD_FINAL_COMPLETED, OD_OUTCOME_SUCCESS, 1, 1, 1, 0, 500, 4000, 25000, "sim: conversation ended, goal completed"},
    {OD_FINAL_COMPLETED, OD_OUTCOME_SUCCESS, 0, 1, 1, 0, 500, 4000, 25000, "sim: conversation ended"},
    {OD_FINAL_COMPLETED, OD_OUTCOME_MIDDLE, 0, 1, 1, 0, 500, 4000, 25000, "sim: conversation ended"},
    {OD_FINAL_COMPLETED, OD_OUTCOME_SPAM, 0, 1, 1, 0, 500, 4000, 25000, "sim: conversation ended"},
    {OD_FINAL_NO_ANSWER, OD_OUTCOME_NONE, -1, 1, 0, 0, 500, 30000, 0, "sim: 480 no answer"},
    {OD_FINAL_BUSY, OD_OUTCOME_NONE, -1, 0, 0, 0, 1500, 0, 0, "sim: 486 Busy Here"},
    {OD_FINAL_VOICEMAIL_DETECTED, OD_OUTCOME_NONE, -1, 1, 1, 1, 500, 5000, 3000, "sim: answering machine detected"},
    {OD_FINAL_INVALID_NUMBER, OD_OUTCOME_NONE, -1, 0, 0, 0, 800, 0, 0, "sim: 404 Not Found"},
    {OD_FINAL_CALLER_ID_UNAUTHORIZED, OD_OUTCOME_NONE, -1, 0, 0, 0, 800, 0, 0, "sim: 403 caller ID not authorized"},
    {OD_FINAL_PROVIDER_ERROR, OD_OUTCOME_NONE, -1, 0, 0, 0, 1200, 0, 0, "sim: 503 Service Unavailable"},
};

typedef struct provider_sim provider_sim_t;

/* the phase a call is in; its timer ends the phase */
typedef enum sim_phase {
    SIM_SETUP,   /* dialed, not ringing yet (sim->calls) */
    SIM_RINGING, /* ringing() reported (sim->calls) */
    SIM_TALKING, /* answered() reported (sim->calls) */
    SIM_HANGUP,  /* hangup() asked: ended() on the next timer (sim->calls) */
    SIM_CLOSING, /* ended() reported or dropped; timer closing, then freed (off every list) */
} sim_phase_t;

struct provider_call {
    uv_timer_t timer;
    provider_sim_t *sim;
    provider_sim_plan_t plan;
    const provider_cbs_t *cbs;
    void *arg;
    sim_phase_t phase;
    sim_phase_t hung_in; /* the phase hangup() interrupted */
    uint64_t answered_at;
    int answered;
    char call_id[37];      /* names the recording */
    provider_call_t *prev, *next;
};

struct provider_sim {
    provider_t base;
    double scale;
    int log_fd;           /* dial log, or -1 */
    provider_call_t *calls; /* calls not yet ended */
    int nhandles;         /* calls whose timer is not closed yet */
    int destroying;
};

static uint64_t scaled(unsigned base_ms, double scale)
{
    double v = (double)base_ms * scale;
    return v <= 0 ? 0 : (uint64_t)llround(v);
}

/* a metadata override: a non-negative number or numeric string, in ms; -1 if absent or unusable */
static int64_t override_ms(const json_t *metadata, const char *key)
{
    if (metadata == NULL || !json_is_object(metadata))
        return -1;
    const json_t *v = json_object_get(metadata, key);
    double d;
    if (json_is_number(v)) {
        d = json_number_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        errno = 0;
        d = strtod(s, &end);
        if (end == s || *end != '\0' || errno != 0)
            return -1;
    } else {
        return -1;
    }
    if (!isfinite(d) || d < 0)
        return -1;
    if (d > (double)SIM_MAX_OVERRIDE_MS)
        d = (double)SIM_MAX_OVERRIDE_MS;
    return (int64_t)llround(d);
}

/* metadata sim_recording: the kind of recording asked for, or 0 */
static od_recording_kind_t recording_kind(const json_t *metadata)
{
    const json_t *v = json_is_object(metadata) ? json_object_get(metadata, "sim_recording") : NULL;
    const char *s = json_string_value(v);
    if (json_is_true(v) || (json_is_integer(v) && json_integer_value(v) == 1) ||
        (s != NULL && (strcmp(s, "true") == 0 || strcmp(s, "1") == 0 || strcmp(s, "url") == 0)))
        return OD_RECORDING_URL;
    if (s != NULL && strcmp(s, "object_key") == 0)
        return OD_RECORDING_OBJECT_KEY;
    return 0;
}

void provider_sim_plan(const char *phone, const json_t *metadata, double scale, provider_sim_plan_t *plan)
{
    size_t len = strlen(phone);
    int digit = len > 0 && phone[len - 1] >= '0' && phone[len - 1] <= '9' ? phone[len - 1] - '0' : -1;
    const sim_row_t *row = &sim_table[digit >= 0 ? digit : 9];

    memset(plan, 0, sizeof(*plan));
    plan->digit = digit;
    plan->final_state = row->final_state;
    plan->outcome = row->outcome;
    plan->goal_completed = row->goal_completed;
    plan->rings = row->rings;
    plan->answers = row->answers;
    plan->machine = row->machine;
    plan->setup_ms = scaled(row->setup_ms, scale);
    plan->ring_ms = scaled(row->ring_ms, scale);
    plan->talk_ms = scaled(row->talk_ms, scale);
    plan->detail = digit >= 0 ? row->detail : "sim: the phone number has no final digit";

    int64_t o;
    if (row->rings && (o = override_ms(metadata, "sim_ring_ms")) >= 0)
        plan->ring_ms = (uint64_t)o;
    if (row->final_state == OD_FINAL_COMPLETED && (o = override_ms(metadata, "sim_talk_ms")) >= 0)
        plan->talk_ms = (uint64_t)o;
    if (row->answers)
        plan->recording = recording_kind(metadata);
}

static void log_dial(provider_sim_t *sim, const provider_req_t *req)
{
    if (sim->log_fd < 0)
        return;
    char line[256];
    size_t n = od_rfc3339_format(od_now_us(), line);
    int m = snprintf(line + n, sizeof(line) - n, " %s %s\n", req->call_id, req->phone);
    if (m < 0 || (size_t)m >= sizeof(line) - n) {
        od_log(OD_LOG_ERROR, req->call_id, "sim: dial log line too long");
        return;
    }
    n += (size_t)m;
    /* one write() on an O_APPEND fd: lines of concurrent dialers never interleave */
    ssize_t w = write(sim->log_fd, line, n);
    if (w != (ssize_t)n)
        od_log(OD_LOG_ERROR, req->call_id, "sim: dial log write failed: %s", w < 0 ? strerror(errno) : "short write");
}

static void on_call_closed(uv_handle_t *h)
{
    provider_call_t *call = h->data;
    provider_sim_t *sim = call->sim;
    free(call);
    if (--sim->nhandles == 0 && sim->destroying)
        free(sim);
}

static void unlink_call(provider_call_t *call)
{
    provider_sim_t *sim = call->sim;
    if (call->prev != NULL)
        call->prev->next = call->next;
    else
        sim->calls = call->next;
    if (call->next != NULL)
        call->next->prev = call->prev;
    call->prev = call->next = NULL;
}

static void end_call(provider_call_t *call, od_final_state_t final_state, od_outcome_t outcome, int goal,
                     int64_t talk_ms, od_hangup_by_t hangup_by, const char *detail)
{
    provider_result_t res = {.final_state = final_state, .outcome = outcome, .goal_completed = goal,
                             .talk_ms = talk_ms, .hangup_by = hangup_by, .detail = detail};
    od_call_recording_t rec;
    if (call->plan.recording != 0 && call->answered) {
        rec.kind = call->plan.recording;
        snprintf(rec.ref, sizeof(rec.ref), "%s%s.wav",
                 rec.kind == OD_RECORDING_URL ? "https://sim.outdial.invalid/recordings/" : "sim/recordings/",
                 call->call_id);
        rec.duration_ms = (int64_t)(uv_now(call->timer.loop) - call->answered_at);
        unsigned char md[32];
        EVP_Digest(call->call_id, strlen(call->call_id), md, NULL, EVP_sha256(), NULL);
        od_hex(md, sizeof(md), rec.sha256);
        res.recording = &rec;
    }
    unlink_call(call);
    call->phase = SIM_CLOSING;
    uv_close((uv_handle_t *)&call->timer, on_call_closed);
    call->cbs->ended(call->arg, &res);
}

static void end_as_planned(provider_call_t *call, int64_t talk_ms)
{
    const provider_sim_plan_t *p = &call->plan;
    if (p->final_state != OD_FINAL_COMPLETED)
        talk_ms = 0;
    /* a completed call ends when the callee's talk time is over: the callee hangs up */
    end_call(call, p->final_state, p->outcome, p->goal_completed, talk_ms,
             p->final_state == OD_FINAL_COMPLETED ? OD_HANGUP_CALLEE : OD_HANGUP_UNKNOWN, p->detail);
}

static void on_hangup_timer(provider_call_t *call)
{
    uint64_t now = uv_now(call->timer.loop);
    if (call->hung_in == SIM_TALKING && call->plan.final_state == OD_FINAL_COMPLETED)
        end_call(call, OD_FINAL_COMPLETED, call->plan.outcome, call->plan.goal_completed,
                 (int64_t)(now - call->answered_at), OD_HANGUP_US, "sim: hung up by the dialer");
    else if (call->hung_in == SIM_TALKING)
        end_as_planned(call, 0);
    else
        end_call(call, OD_FINAL_NO_ANSWER, OD_OUTCOME_NONE, -1, 0, OD_HANGUP_UNKNOWN,
                 "sim: hung up by the dialer before answer");
}

/* Reports a callback, then arms the next phase unless the callback hung up. */
static void next_phase(provider_call_t *call, void (*cb)(void *), sim_phase_t phase, uint64_t ms);

static void on_timer(uv_timer_t *t)
{
    provider_call_t *call = t->data;
    const provider_sim_plan_t *p = &call->plan;
    switch (call->phase) {
    case SIM_SETUP:
        if (p->rings)
            next_phase(call, call->cbs->ringing, SIM_RINGING, p->ring_ms);
        else
            end_as_planned(call, 0);
        break;
    case SIM_RINGING:
        if (p->answers) {
            call->answered_at = uv_now(t->loop);
            call->answered = 1;
            next_phase(call, call->cbs->answered, SIM_TALKING, p->talk_ms);
        } else {
            end_as_planned(call, 0);
        }
        break;
    case SIM_TALKING:
        if (p->machine)
            call->cbs->machine_detected(call->arg);
        if (call->phase == SIM_TALKING) /* not hung up by machine_detected() */
            end_as_planned(call, (int64_t)(uv_now(t->loop) - call->answered_at));
        break;
    case SIM_HANGUP:
        on_hangup_timer(call);
        break;
    case SIM_CLOSING:
        assert(0);
    }
}

static void next_phase(provider_call_t *call, void (*cb)(void *), sim_phase_t phase, uint64_t ms)
{
    call->phase = phase;
    cb(call->arg);
    if (call->phase == phase)
        uv_timer_start(&call->timer, on_timer, ms, 0);
}

static int sim_dial(provider_t *p, const provider_req_t *req, const provider_cbs_t *cbs, void *arg,
                    provider_call_t **handle, char *errstr, size_t errlen)
{
    provider_sim_t *sim = (provider_sim_t *)p;
    (void)errstr;
    (void)errlen;
    assert(!sim->destroying);
    provider_call_t *call = od_calloc(1, sizeof(*call));
    call->sim = sim;
    call->cbs = cbs;
    call->arg = arg;
    snprintf(call->call_id, sizeof(call->call_id), "%s", req->call_id);
    provider_sim_plan(req->phone, req->metadata, sim->scale, &call->plan);
    uv_timer_init(p->loop, &call->timer);
    call->timer.data = call;
    call->phase = SIM_SETUP;
    call->next = sim->calls;
    if (sim->calls != NULL)
        sim->calls->prev = call;
    sim->calls = call;
    sim->nhandles++;
    log_dial(sim, req); /* before any callback can run */
    uv_timer_start(&call->timer, on_timer, call->plan.setup_ms, 0);
    *handle = call;
    return 0;
}

static void sim_hangup(provider_call_t *call)
{
    assert(call->phase != SIM_CLOSING);
    if (call->phase == SIM_HANGUP)
        return;
    call->hung_in = call->phase;
    call->phase = SIM_HANGUP;
    uv_timer_start(&call->timer, on_timer, 0, 0);
}

static void sim_destroy(provider_t *p)
{
    provider_sim_t *sim = (provider_sim_t *)p;
    sim->destroying = 1;
    if (sim->log_fd >= 0)
        close(sim->log_fd);
    sim->log_fd = -1;
    while (sim->calls != NULL) {
        provider_call_t *call = sim->calls;
        unlink_call(call);
        call->phase = SIM_CLOSING;
        uv_close((uv_handle_t *)&call->timer, on_call_closed);
    }
    if (sim->nhandles == 0)
        free(sim);
}

static const provider_ops_t sim_ops = {"sim", sim_dial, sim_hangup, NULL, sim_destroy};

provider_t *provider_sim_new(uv_loop_t *loop, double time_scale, const char *dial_log, char *errstr, size_t errlen)
{
    int fd = -1;
    if (dial_log != NULL && dial_log[0] != '\0') {
        fd = open(dial_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            snprintf(errstr, errlen, "sim: can't open the dial log %s: %s", dial_log, strerror(errno));
            return NULL;
        }
    }
    provider_sim_t *sim = od_calloc(1, sizeof(*sim));
    sim->base.ops = &sim_ops;
    sim->base.loop = loop;
    sim->scale = time_scale < 0 ? 0 : time_scale;
    sim->log_fd = fd;
    return &sim->base;
}
