/*
 * libFuzzer target for a conversation engine's report (services/dialer/
 * engine_report.c), the body of POST <callback>/sessions/{call}/report as
 * the dialer reads it (JSON, duplicates refused), with the recording in it
 * (od_call_recording_parse, libs/call).
 * Properties checked beyond "no crash, no sanitizer report, no NULL from
 * jansson passed on" (json_strict.c):
 *  - a refusal names the member at fault and says why;
 *  - an accepted report is completed (with an outcome) or voicemail;
 *  - a recording accepted, encoded (od_call_recording_encode), parses back
 *    to the same recording.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine_report.h"

#define CHECK(c) ((c) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *rep = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (rep == NULL)
        return 0;
    dialer_engine_report_t r;
    const char *msg = NULL, *field = dialer__engine_report_parse(rep, &r, &msg);
    json_decref(rep);
    if (field != NULL) {
        CHECK(msg != NULL && msg[0] != '\0');
        return 0;
    }
    CHECK(r.report == ENGINE_REPORT_VOICEMAIL || (r.report == ENGINE_REPORT_COMPLETED && r.outcome > OD_OUTCOME_NONE));
    if (r.has_recording) {
        od_buf_t b = OD_BUF_INIT;
        od_call_recording_encode(&r.rec, &b);
        json_t *o = json_loadb(b.base, b.len, 0, &jerr);
        CHECK(o != NULL);
        od_call_recording_t again;
        CHECK(od_call_recording_parse(o, &again, &field, &msg) == 0);
        CHECK(again.kind == r.rec.kind && strcmp(again.ref, r.rec.ref) == 0 &&
              again.duration_ms == r.rec.duration_ms && strcmp(again.sha256, r.rec.sha256) == 0);
        json_decref(o);
        od_buf_free(&b);
    }
    return 0;
}
