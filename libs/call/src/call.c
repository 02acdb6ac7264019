#include "od/call.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/rfc3339.h"

static const char *const status_names[OD_CALL_NSTATUS] = {"queued", "dialing", "connected",
                                                          "completed", "failed", "canceled"};
static const char *const final_names[OD_FINAL_NSTATES] = {
    NULL,           "completed",     "no_answer",      "busy",     "voicemail_detected", "invalid_number",
    "caller_id_unauthorized", "provider_error", "internal_error", "canceled", "dnc_blocked"};
static const char *const outcome_names[] = {NULL, "success", "middle", "spam"};
static const char *const hangup_names[] = {NULL, "callee", "us"};

static int find(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (names[i] != NULL && strcmp(names[i], name) == 0)
            return i;
    return -1;
}

const char *od_call_status_name(od_call_status_t s)
{
    return (unsigned)s < OD_CALL_NSTATUS ? status_names[s] : "unknown";
}

int od_call_status_parse(const char *name)
{
    return find(status_names, OD_CALL_NSTATUS, name);
}

const char *od_final_state_name(od_final_state_t f)
{
    return (unsigned)f < OD_FINAL_NSTATES ? final_names[f] : NULL;
}

int od_final_state_parse(const char *name)
{
    return find(final_names, OD_FINAL_NSTATES, name);
}

const char *od_outcome_name(od_outcome_t o)
{
    return (unsigned)o < OD_ARRAY_SIZE(outcome_names) ? outcome_names[o] : NULL;
}

int od_outcome_parse(const char *name)
{
    return find(outcome_names, (int)OD_ARRAY_SIZE(outcome_names), name);
}

const char *od_hangup_by_name(od_hangup_by_t h)
{
    return (unsigned)h < OD_ARRAY_SIZE(hangup_names) ? hangup_names[h] : NULL;
}

int od_hangup_by_parse(const char *name)
{
    return find(hangup_names, (int)OD_ARRAY_SIZE(hangup_names), name);
}

od_call_status_t od_final_state_status(od_final_state_t f)
{
    switch (f) {
    case OD_FINAL_COMPLETED: return OD_CALL_COMPLETED;
    case OD_FINAL_CANCELED:
    case OD_FINAL_DNC_BLOCKED: return OD_CALL_CANCELED;
    default: return OD_CALL_FAILED;
    }
}

int od_call_status_final(od_call_status_t s)
{
    return s == OD_CALL_COMPLETED || s == OD_CALL_FAILED || s == OD_CALL_CANCELED;
}

int od_call_can_move(od_call_status_t from, od_call_status_t to)
{
    if (od_call_status_final(from))
        return 0;
    switch (to) {
    case OD_CALL_DIALING: return from == OD_CALL_QUEUED;
    case OD_CALL_CONNECTED: return from == OD_CALL_DIALING;
    /* dialing -> completed is allowed: an answer and hang-up may be reported as one event */
    case OD_CALL_COMPLETED: return from == OD_CALL_DIALING || from == OD_CALL_CONNECTED;
    case OD_CALL_FAILED:
    case OD_CALL_CANCELED: return 1;
    default: return 0;
    }
}

const char *od_call_allowed_from(od_call_status_t to)
{
    static char lits[OD_CALL_NSTATUS][64];
    char *lit = lits[to];
    if (lit[0] == '\0') {
        size_t n = 0;
        lit[n++] = '{';
        for (int s = 0; s < OD_CALL_NSTATUS; s++) {
            if (!od_call_can_move((od_call_status_t)s, to))
                continue;
            n += (size_t)snprintf(lit + n, sizeof(lits[0]) - n, "%s%s", n > 1 ? "," : "", status_names[s]);
        }
        lit[n++] = '}';
        lit[n] = '\0';
    }
    return lit;
}

/* 1 if [s, s + n) has a byte below 0x20 or 0x7f, or (`no_space`) a space */
static int has_control(const char *s, size_t n, int no_space)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f || (no_space && s[i] == ' '))
            return 1;
    return 0;
}

int od_call_recording_parse(const json_t *obj, od_call_recording_t *rec, const char **field, const char **msg)
{
    memset(rec, 0, sizeof(*rec));
    if (!json_is_object(obj)) {
        *field = "recording", *msg = "must be an object {\"url\" or \"object_key\", \"duration_ms\", \"sha256\"}";
        return -1;
    }
    json_t *url = json_object_get(obj, "url"), *key = json_object_get(obj, "object_key");
    if ((url == NULL) == (key == NULL)) {
        *field = "recording", *msg = "must have exactly one of url and object_key";
        return -1;
    }
    json_t *ref = url != NULL ? url : key;
    const char *s = json_string_value(ref);
    size_t n = json_string_length(ref);
    *field = url != NULL ? "recording.url" : "recording.object_key";
    if (s == NULL || n == 0 || n > OD_RECORDING_REF_MAX) {
        *msg = url != NULL ? "must be a URL of 1 to 2048 bytes" : "must be a string of 1 to 2048 bytes";
        return -1;
    }
    if (url != NULL && ((strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0) || has_control(s, n, 1))) {
        *msg = "must be an http:// or https:// URL without spaces or control characters";
        return -1;
    }
    if (key != NULL && has_control(s, n, 0)) {
        *msg = "must not contain control characters";
        return -1;
    }
    rec->kind = url != NULL ? OD_RECORDING_URL : OD_RECORDING_OBJECT_KEY;
    memcpy(rec->ref, s, n + 1);
    json_t *d = json_object_get(obj, "duration_ms");
    if (!json_is_integer(d) || json_integer_value(d) < 0) {
        *field = "recording.duration_ms", *msg = "must be an integer >= 0";
        return -1;
    }
    rec->duration_ms = json_integer_value(d);
    const char *h = json_string_value(json_object_get(obj, "sha256"));
    size_t i = 0;
    for (; h != NULL && i < 64 && ((h[i] >= '0' && h[i] <= '9') || ((h[i] | 0x20) >= 'a' && (h[i] | 0x20) <= 'f')); i++)
        rec->sha256[i] = (char)(h[i] >= 'A' && h[i] <= 'F' ? h[i] + 32 : h[i]);
    if (h == NULL || i != 64 || h[64] != '\0') {
        *field = "recording.sha256", *msg = "must be the SHA-256 of the recording: 64 hex digits";
        return -1;
    }
    *field = NULL;
    return 0;
}

void od_call_recording_encode(const od_call_recording_t *rec, od_buf_t *out)
{
    od_buf_printf(out, "{\"%s\":", rec->kind == OD_RECORDING_URL ? "url" : "object_key");
    od_buf_json_str(out, rec->ref, strlen(rec->ref));
    od_buf_printf(out, ",\"duration_ms\":%lld,\"sha256\":\"%s\"}", (long long)rec->duration_ms, rec->sha256);
}

void od_call_event_clear(od_call_event_t *ev)
{
    free(ev->recording);
    ev->recording = NULL;
}

void od_call_event_encode(const od_call_event_t *ev, od_buf_t *out)
{
    char at[32];
    od_rfc3339_format(ev->at_us, at);
    od_buf_printf(out, "{\"v\":1,\"type\":\"call.event\",\"call_id\":\"%s\",\"project_id\":\"%s\",\"status\":\"%s\"",
                  ev->call_id, ev->project_id, od_call_status_name(ev->status));
    const char *f = od_final_state_name(ev->final_state), *o = od_outcome_name(ev->outcome);
    if (f != NULL)
        od_buf_printf(out, ",\"final_state\":\"%s\"", f);
    if (o != NULL)
        od_buf_printf(out, ",\"outcome\":\"%s\"", o);
    if (ev->goal_completed >= 0)
        od_buf_printf(out, ",\"goal_completed\":%s", ev->goal_completed ? "true" : "false");
    if (ev->duration_ms >= 0)
        od_buf_printf(out, ",\"duration_ms\":%lld", (long long)ev->duration_ms);
    if (ev->opted_out)
        od_buf_puts(out, ",\"opted_out\":true");
    if (od_hangup_by_name(ev->hangup_by) != NULL)
        od_buf_printf(out, ",\"hangup_by\":\"%s\"", od_hangup_by_name(ev->hangup_by));
    od_buf_printf(out, ",\"at\":\"%s\",\"at_us\":%lld", at, (long long)ev->at_us);
    if (ev->detail[0] != '\0') {
        od_buf_puts(out, ",\"detail\":");
        od_buf_json_str(out, ev->detail, strlen(ev->detail));
    }
    if (ev->component[0] != '\0')
        od_buf_printf(out, ",\"component\":\"%s\"", ev->component);
    if (ev->dialer_id[0] != '\0') {
        od_buf_puts(out, ",\"dialer_id\":");
        od_buf_json_str(out, ev->dialer_id, strlen(ev->dialer_id));
    }
    if (ev->recording != NULL) {
        od_buf_puts(out, ",\"recording\":");
        od_call_recording_encode(ev->recording, out);
    }
    od_buf_puts(out, "}");
}

static int copy_str(json_t *obj, const char *key, char *dst, size_t cap, int required)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL || json_is_null(v))
        return required ? -1 : 0;
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int od_call_event_decode(const char *json, size_t len, od_call_event_t *ev, char *errstr, size_t errlen)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    memset(ev, 0, sizeof(*ev));
    ev->goal_completed = -1;
    ev->duration_ms = -1;
    if (root == NULL || !json_is_object(root)) {
        snprintf(errstr, errlen, "not a JSON object: %s", root ? "" : jerr.text);
        json_decref(root);
        return -1;
    }
    char buf[32];
    int rc = -1;
    json_t *v;
    if ((v = json_object_get(root, "v")) == NULL || !json_is_integer(v) || json_integer_value(v) != 1) {
        snprintf(errstr, errlen, "unsupported message version");
        goto out;
    }
    if (copy_str(root, "call_id", ev->call_id, sizeof(ev->call_id), 1) != 0 ||
        od_uuid_check(ev->call_id, strlen(ev->call_id)) != 0 ||
        copy_str(root, "project_id", ev->project_id, sizeof(ev->project_id), 1) != 0 ||
        od_uuid_check(ev->project_id, strlen(ev->project_id)) != 0) {
        snprintf(errstr, errlen, "bad call_id or project_id");
        goto out;
    }
    int s;
    if (copy_str(root, "status", buf, sizeof(buf), 1) != 0 || (s = od_call_status_parse(buf)) < 0) {
        snprintf(errstr, errlen, "bad status");
        goto out;
    }
    ev->status = (od_call_status_t)s;
    buf[0] = '\0';
    if (copy_str(root, "final_state", buf, sizeof(buf), 0) != 0 ||
        (buf[0] != '\0' && (s = od_final_state_parse(buf)) < 0)) {
        snprintf(errstr, errlen, "bad final_state");
        goto out;
    }
    ev->final_state = buf[0] != '\0' ? (od_final_state_t)s : OD_FINAL_NONE;
    buf[0] = '\0';
    if (copy_str(root, "outcome", buf, sizeof(buf), 0) != 0 || (buf[0] != '\0' && (s = od_outcome_parse(buf)) < 0)) {
        snprintf(errstr, errlen, "bad outcome");
        goto out;
    }
    ev->outcome = buf[0] != '\0' ? (od_outcome_t)s : OD_OUTCOME_NONE;
    if ((v = json_object_get(root, "goal_completed")) != NULL && json_is_boolean(v))
        ev->goal_completed = json_is_true(v);
    if ((v = json_object_get(root, "duration_ms")) != NULL && json_is_integer(v) && json_integer_value(v) >= 0)
        ev->duration_ms = json_integer_value(v);
    ev->opted_out = json_is_true(json_object_get(root, "opted_out"));
    /* an unknown value is not worth losing the event: who hung up stays unknown */
    const char *hb = json_string_value(json_object_get(root, "hangup_by"));
    if (hb != NULL && (s = od_hangup_by_parse(hb)) > 0)
        ev->hangup_by = (od_hangup_by_t)s;
    if ((v = json_object_get(root, "at_us")) == NULL || !json_is_integer(v)) {
        snprintf(errstr, errlen, "bad at_us");
        goto out;
    }
    ev->at_us = json_integer_value(v);
    if (copy_str(root, "detail", ev->detail, sizeof(ev->detail), 0) != 0 ||
        copy_str(root, "dialer_id", ev->dialer_id, sizeof(ev->dialer_id), 0) != 0) {
        snprintf(errstr, errlen, "bad detail or dialer_id");
        goto out;
    }
    if (copy_str(root, "component", ev->component, sizeof(ev->component), 0) != 0 ||
        (ev->component[0] != '\0' && strcmp(ev->component, "dialer") != 0 && strcmp(ev->component, "provider") != 0 &&
         strcmp(ev->component, "engine") != 0)) {
        ev->component[0] = '\0'; /* an unknown component is not worth losing the event: "dialer" is assumed */
    }
    if (od_call_status_final(ev->status) != (ev->final_state != OD_FINAL_NONE) ||
        (ev->final_state != OD_FINAL_NONE && od_final_state_status(ev->final_state) != ev->status)) {
        snprintf(errstr, errlen, "status and final_state disagree");
        goto out;
    }
    if ((v = json_object_get(root, "recording")) != NULL && !json_is_null(v)) {
        od_call_recording_t rec;
        const char *field, *msg;
        if (od_call_recording_parse(v, &rec, &field, &msg) == 0) {
            ev->recording = od_malloc(sizeof(rec));
            memcpy(ev->recording, &rec, sizeof(rec));
        }
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
