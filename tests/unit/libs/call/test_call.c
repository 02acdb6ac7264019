/* The call state machine and the calls.events message. */
#include "od/call.h"

#include <stdlib.h>

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

int main(void)
{
    test_forward_only();
    test_names();
    test_event_roundtrip();
    return od_test_result("test_call");
}
