/*
 * libFuzzer target for od_call_event_decode (libs/call): a message of the
 * calls.events topic as the outcome service reads it (services/outcome/
 * apply.c).
 * Properties checked beyond "no crash, no sanitizer report, no NULL from
 * jansson passed on" (json_strict.c):
 *  - a refused message says why (errstr) and owns nothing;
 *  - an accepted one has UUIDs for its ids, a component among dialer,
 *    provider, engine (apply.c writes it unescaped) or none;
 *  - round trip: od_call_event_encode of it decodes to the same event.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "od/call.h"
#include "od/core.h"

#define CHECK(c) ((c) ? (void)0 : abort())

static void same_recording(const od_call_recording_t *a, const od_call_recording_t *b)
{
    CHECK((a == NULL) == (b == NULL));
    if (a == NULL)
        return;
    CHECK(a->kind == b->kind && strcmp(a->ref, b->ref) == 0 && a->duration_ms == b->duration_ms &&
          strcmp(a->sha256, b->sha256) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    od_call_event_t ev, again;
    char err[256] = "";
    if (od_call_event_decode((const char *)data, size, &ev, err, sizeof(err)) != 0) {
        CHECK(err[0] != '\0' && ev.recording == NULL);
        return 0;
    }
    CHECK(od_uuid_check(ev.call_id, strlen(ev.call_id)) == 0 && od_uuid_check(ev.project_id, strlen(ev.project_id)) == 0);
    CHECK(ev.component[0] == '\0' || strcmp(ev.component, "dialer") == 0 || strcmp(ev.component, "provider") == 0 ||
          strcmp(ev.component, "engine") == 0);
    od_buf_t b = OD_BUF_INIT;
    od_call_event_encode(&ev, &b);
    if (od_call_event_decode(b.base, b.len, &again, err, sizeof(err)) != 0)
        abort();
    CHECK(strcmp(ev.call_id, again.call_id) == 0 && strcmp(ev.project_id, again.project_id) == 0);
    CHECK(ev.status == again.status && ev.final_state == again.final_state && ev.outcome == again.outcome);
    CHECK(ev.goal_completed == again.goal_completed && ev.at_us == again.at_us && ev.duration_ms == again.duration_ms);
    CHECK(ev.opted_out == again.opted_out && ev.hangup_by == again.hangup_by);
    CHECK(strcmp(ev.detail, again.detail) == 0 && strcmp(ev.component, again.component) == 0 &&
          strcmp(ev.dialer_id, again.dialer_id) == 0);
    same_recording(ev.recording, again.recording);
    od_call_event_clear(&again);
    od_call_event_clear(&ev);
    od_buf_free(&b);
    return 0;
}
