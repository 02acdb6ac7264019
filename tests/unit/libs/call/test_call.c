/* The call state machine and the calls.events message. */
#include "od/call.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "od/buf.h"
#include "od_test.h"

static void test_forward_only(void)
{
    /* the happy path */
    CHECK(od_call_can_move(OD_CALL_QUEUED, OD_CALL_DIALING));
    CHECK(od_call_can_move(OD_CALL_DIALING, OD_CALL_CONNECTED));
    CHECK(od_call_can_move(OD_CALL_CONNECTED, OD_CALL_COMPLETED));
    /* never backwards, never skipping the claim */
    CHECK(!od_call_can_move(OD_CALL_CONNECTED, OD_CALL_DIALING));
    CHECK(!od_call_can_move(OD_CALL_DIALING, OD_CALL_QUEUED));
    CHECK(!od_call_can_move(OD_CALL_QUEUED, OD_CALL_CONNECTED));
    CHECK(!od_call_can_move(OD_CALL_QUEUED, OD_CALL_COMPLETED));
    CHECK(!od_call_can_move(OD_CALL_DIALING, OD_CALL_DIALING));
    /* failed or canceled from any non-final status */
    for (int s = OD_CALL_QUEUED; s <= OD_CALL_CONNECTED; s++) {
        CHECK(od_call_can_move((od_call_status_t)s, OD_CALL_FAILED));
        CHECK(od_call_can_move((od_call_status_t)s, OD_CALL_CANCELED));
    }
    /* final statuses never move: late and duplicate events are ignored */
    for (int f = OD_CALL_COMPLETED; f <= OD_CALL_CANCELED; f++)
        for (int t = 0; t < OD_CALL_NSTATUS; t++)
            CHECK(!od_call_can_move((od_call_status_t)f, (od_call_status_t)t));
    CHECK_STR(od_call_allowed_from(OD_CALL_DIALING), "{queued}");
    CHECK_STR(od_call_allowed_from(OD_CALL_CONNECTED), "{dialing}");
    CHECK_STR(od_call_allowed_from(OD_CALL_COMPLETED), "{dialing,connected}");
    CHECK_STR(od_call_allowed_from(OD_CALL_FAILED), "{queued,dialing,connected}");
    CHECK_STR(od_call_allowed_from(OD_CALL_QUEUED), "{}");
}

static void test_names(void)
{
    for (int s = 0; s < OD_CALL_NSTATUS; s++)
        CHECK(od_call_status_parse(od_call_status_name((od_call_status_t)s)) == s);
    for (int f = 1; f < OD_FINAL_NSTATES; f++)
        CHECK(od_final_state_parse(od_final_state_name((od_final_state_t)f)) == f);
    CHECK(od_call_status_parse("bogus") == -1);
    CHECK(od_final_state_parse("") == -1);
    CHECK(od_final_state_status(OD_FINAL_COMPLETED) == OD_CALL_COMPLETED);
    CHECK(od_final_state_status(OD_FINAL_DNC_BLOCKED) == OD_CALL_CANCELED);
    CHECK(od_final_state_status(OD_FINAL_CANCELED) == OD_CALL_CANCELED);
    CHECK(od_final_state_status(OD_FINAL_VOICEMAIL_DETECTED) == OD_CALL_FAILED);
    CHECK(od_final_state_status(OD_FINAL_INTERNAL_ERROR) == OD_CALL_FAILED);
}

static void test_event_roundtrip(void)
{
    od_call_event_t ev = {.status = OD_CALL_COMPLETED, .final_state = OD_FINAL_COMPLETED,
                          .outcome = OD_OUTCOME_MIDDLE, .goal_completed = 0, .at_us = 1795464291904123,
                          .duration_ms = 30500, .opted_out = 1, .hangup_by = OD_HANGUP_CALLEE};
    strcpy(ev.call_id, "0194a3b2-7c1d-7000-8000-0000000000c1");
    strcpy(ev.project_id, "0194a3b2-7c1d-7000-8000-000000000001");
    strcpy(ev.detail, "quote \" and newline \n");
    strcpy(ev.dialer_id, "d-1");
    od_buf_t b = OD_BUF_INIT;
    od_call_event_encode(&ev, &b);
    od_call_event_t back;
    char err[128];
    CHECK(od_call_event_decode(b.base, b.len, &back, err, sizeof(err)) == 0);
    CHECK_STR(back.call_id, ev.call_id);
    CHECK(back.status == OD_CALL_COMPLETED && back.final_state == OD_FINAL_COMPLETED);
    CHECK(back.outcome == OD_OUTCOME_MIDDLE && back.goal_completed == 0);
    CHECK(back.duration_ms == 30500 && back.at_us == ev.at_us);
    CHECK(back.opted_out == 1);
    CHECK(strstr(b.base, "\"hangup_by\":\"callee\"") != NULL && back.hangup_by == OD_HANGUP_CALLEE);
    CHECK_STR(back.detail, ev.detail);
    od_buf_free(&b);
    ev.hangup_by = OD_HANGUP_US;
    od_call_event_encode(&ev, &b);
    CHECK(od_call_event_decode(b.base, b.len, &back, err, sizeof(err)) == 0 && back.hangup_by == OD_HANGUP_US);
    od_buf_free(&b);
    /* absent: not opted out, who hung up unknown */
    ev.opted_out = 0;
    ev.hangup_by = OD_HANGUP_UNKNOWN;
    od_call_event_encode(&ev, &b);
    CHECK(strstr(b.base, "opted_out") == NULL && strstr(b.base, "hangup_by") == NULL);
    CHECK(od_call_event_decode(b.base, b.len, &back, err, sizeof(err)) == 0 && back.opted_out == 0);
    CHECK(back.hangup_by == OD_HANGUP_UNKNOWN);
    CHECK(strstr(b.base, "component") == NULL && back.component[0] == '\0');
    od_buf_free(&b);
    /* an internal error names its component; an unknown one is dropped, not the event */
    ev.status = OD_CALL_FAILED;
    ev.final_state = OD_FINAL_INTERNAL_ERROR;
    ev.outcome = OD_OUTCOME_NONE;
    strcpy(ev.component, "engine");
    od_call_event_encode(&ev, &b);
    CHECK(od_call_event_decode(b.base, b.len, &back, err, sizeof(err)) == 0);
    CHECK_STR(back.component, "engine");
    od_buf_free(&b);
    static const char odd[] = "{\"v\":1,\"call_id\":\"0194a3b2-7c1d-7000-8000-0000000000c1\",\"project_id\":"
                              "\"0194a3b2-7c1d-7000-8000-000000000001\",\"status\":\"failed\",\"final_state\":"
                              "\"internal_error\",\"at_us\":1,\"component\":\"the-moon-and-beyond\"}";
    CHECK(od_call_event_decode(odd, strlen(odd), &back, err, sizeof(err)) == 0 && back.component[0] == '\0');
    /* an unknown hangup_by is dropped, not the event */
    static const char odd_hangup[] = "{\"v\":1,\"call_id\":\"0194a3b2-7c1d-7000-8000-0000000000c1\",\"project_id\":"
                                     "\"0194a3b2-7c1d-7000-8000-000000000001\",\"status\":\"completed\",\"final_state\":"
                                     "\"completed\",\"at_us\":1,\"hangup_by\":\"the-dog\"}";
    CHECK(od_call_event_decode(odd_hangup, strlen(odd_hangup), &back, err, sizeof(err)) == 0 &&
          back.hangup_by == OD_HANGUP_UNKNOWN);
    CHECK(od_hangup_by_parse("callee") == OD_HANGUP_CALLEE && od_hangup_by_parse("us") == OD_HANGUP_US);
    CHECK(od_hangup_by_name(OD_HANGUP_UNKNOWN) == NULL && od_hangup_by_parse("nobody") == -1);

    static const char *const bad[] = {
        "",
        "[]",
        "{\"v\":2}",
        "{\"v\":1,\"call_id\":\"x\",\"project_id\":\"y\",\"status\":\"completed\",\"at_us\":1}",
        /* final status without a final state */
        "{\"v\":1,\"call_id\":\"0194a3b2-7c1d-7000-8000-0000000000c1\",\"project_id\":"
        "\"0194a3b2-7c1d-7000-8000-000000000001\",\"status\":\"failed\",\"at_us\":1}",
        /* final state that disagrees with the status */
        "{\"v\":1,\"call_id\":\"0194a3b2-7c1d-7000-8000-0000000000c1\",\"project_id\":"
        "\"0194a3b2-7c1d-7000-8000-000000000001\",\"status\":\"failed\",\"final_state\":\"completed\",\"at_us\":1}",
        /* a non-final status with a final state */
        "{\"v\":1,\"call_id\":\"0194a3b2-7c1d-7000-8000-0000000000c1\",\"project_id\":"
        "\"0194a3b2-7c1d-7000-8000-000000000001\",\"status\":\"connected\",\"final_state\":\"busy\",\"at_us\":1}",
        /* duplicate keys */
        "{\"v\":1,\"v\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(od_call_event_decode(bad[i], strlen(bad[i]), &back, err, sizeof(err)) == -1);
}

#define SHA "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"

/* A report's recording: each rule names its field. */
static void test_recording_parse(void)
{
    static const struct {
        const char *json, *field;
    } cases[] = {
        {"{\"url\":\"https://s3.example/r/1.wav?sig=x\",\"duration_ms\":30500,\"sha256\":\"" SHA "\"}", NULL},
        {"{\"object_key\":\"calls/2026/1.wav\",\"duration_ms\":0,\"sha256\":\"" SHA "\",\"later\":1}", NULL},
        {"[]", "recording"},
        {"{\"duration_ms\":1,\"sha256\":\"" SHA "\"}", "recording"},
        {"{\"url\":\"https://a\",\"object_key\":\"k\",\"duration_ms\":1,\"sha256\":\"" SHA "\"}", "recording"},
        {"{\"url\":\"ftp://a/b\",\"duration_ms\":1,\"sha256\":\"" SHA "\"}", "recording.url"},
        {"{\"url\":\"https://a/b c\",\"duration_ms\":1,\"sha256\":\"" SHA "\"}", "recording.url"},
        {"{\"url\":7,\"duration_ms\":1,\"sha256\":\"" SHA "\"}", "recording.url"},
        {"{\"object_key\":\"\",\"duration_ms\":1,\"sha256\":\"" SHA "\"}", "recording.object_key"},
        {"{\"object_key\":\"a\\u0000b\",\"duration_ms\":1,\"sha256\":\"" SHA "\"}", "recording.object_key"},
        {"{\"object_key\":\"k\",\"duration_ms\":-1,\"sha256\":\"" SHA "\"}", "recording.duration_ms"},
        {"{\"object_key\":\"k\",\"duration_ms\":1.5,\"sha256\":\"" SHA "\"}", "recording.duration_ms"},
        {"{\"object_key\":\"k\",\"sha256\":\"" SHA "\"}", "recording.duration_ms"},
        {"{\"object_key\":\"k\",\"duration_ms\":1,\"sha256\":\"abc\"}", "recording.sha256"},
        {"{\"object_key\":\"k\",\"duration_ms\":1,\"sha256\":\"" SHA "0\"}", "recording.sha256"},
        {"{\"object_key\":\"k\",\"duration_ms\":1,\"sha256\":\"" "g" SHA "\"}", "recording.sha256"},
        {"{\"object_key\":\"k\",\"duration_ms\":1}", "recording.sha256"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = json_loads(cases[i].json, JSON_ALLOW_NUL, NULL);
        CHECK(j != NULL);
        od_call_recording_t rec;
        const char *field = NULL, *msg = NULL;
        int rc = od_call_recording_parse(j, &rec, &field, &msg);
        if (cases[i].field == NULL) {
            CHECK(rc == 0 && field == NULL);
        } else {
            CHECK(rc == -1 && msg != NULL);
            CHECK_STR(field, cases[i].field);
        }
        json_decref(j);
    }
    /* the longest reference taken is OD_RECORDING_REF_MAX bytes; one more is refused */
    char *key = malloc(OD_RECORDING_REF_MAX + 2);
    memset(key, 'k', OD_RECORDING_REF_MAX + 1);
    key[OD_RECORDING_REF_MAX + 1] = '\0';
    json_t *j = json_pack("{ss si ss}", "object_key", key, "duration_ms", 1, "sha256", SHA);
    od_call_recording_t rec;
    const char *field, *msg;
    CHECK(od_call_recording_parse(j, &rec, &field, &msg) == -1);
    CHECK_STR(field, "recording.object_key");
    json_decref(j);
    key[OD_RECORDING_REF_MAX] = '\0';
    j = json_pack("{ss si ss}", "object_key", key, "duration_ms", 1, "sha256", SHA);
    CHECK(od_call_recording_parse(j, &rec, &field, &msg) == 0);
    CHECK(strlen(rec.ref) == OD_RECORDING_REF_MAX && rec.kind == OD_RECORDING_OBJECT_KEY);
    /* the checksum is kept lower-case */
    CHECK_STR(rec.sha256, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    json_decref(j);
    free(key);
}

/* The final event carries the recording through Kafka. */
static void test_event_recording(void)
{
    od_call_recording_t rec = {.kind = OD_RECORDING_URL, .duration_ms = 4200};
    strcpy(rec.ref, "https://rec.example/a \"b\".wav");
    strcpy(rec.sha256, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    od_call_event_t ev = {.status = OD_CALL_COMPLETED, .final_state = OD_FINAL_COMPLETED, .goal_completed = 1,
                          .at_us = 1, .duration_ms = 4300, .recording = &rec};
    strcpy(ev.call_id, "0194a3b2-7c1d-7000-8000-0000000000c1");
    strcpy(ev.project_id, "0194a3b2-7c1d-7000-8000-000000000001");
    od_buf_t b = OD_BUF_INIT;
    od_call_event_encode(&ev, &b);
    od_call_event_t back;
    char err[128];
    /* a URL with a space is not one a report can carry; the event keeps what it was given, quoted */
    CHECK(od_call_event_decode(b.base, b.len, &back, err, sizeof(err)) == 0);
    CHECK(back.recording == NULL); /* ... and the decoder, holding to the report's rules, leaves it out */
    od_buf_free(&b);
    strcpy(rec.ref, "https://rec.example/a.wav?x=\"1\"");
    od_call_event_encode(&ev, &b);
    CHECK(od_call_event_decode(b.base, b.len, &back, err, sizeof(err)) == 0);
    CHECK(back.recording != NULL && back.recording->kind == OD_RECORDING_URL);
    CHECK_STR(back.recording->ref, rec.ref);
    CHECK_STR(back.recording->sha256, rec.sha256);
    CHECK(back.recording->duration_ms == 4200);
    od_call_event_clear(&back);
    CHECK(back.recording == NULL);
    od_buf_free(&b);
    rec.kind = OD_RECORDING_OBJECT_KEY;
    strcpy(rec.ref, "bucket/2026/c1.wav");
    od_call_event_encode(&ev, &b);
    CHECK(strstr(b.base, "\"recording\":{\"object_key\":\"bucket/2026/c1.wav\",\"duration_ms\":4200,") != NULL);
    CHECK(od_call_event_decode(b.base, b.len, &back, err, sizeof(err)) == 0);
    CHECK(back.recording != NULL && back.recording->kind == OD_RECORDING_OBJECT_KEY);
    CHECK_STR(back.recording->ref, "bucket/2026/c1.wav");
    od_call_event_clear(&back);
    od_buf_free(&b);
    /* none: no member */
    ev.recording = NULL;
    od_call_event_encode(&ev, &b);
    CHECK(strstr(b.base, "recording") == NULL);
    CHECK(od_call_event_decode(b.base, b.len, &back, err, sizeof(err)) == 0 && back.recording == NULL);
    od_buf_free(&b);
}

int main(void)
{
    test_forward_only();
    test_names();
    test_event_roundtrip();
    test_recording_parse();
    test_event_recording();
    return od_test_result("test_call");
}
