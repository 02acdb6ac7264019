/*
 * A conversation engine's report, read in memory (engine_report.h).
 */
#include "engine_report.h"

#include <string.h>

const char *dialer__engine_report_parse(json_t *rep, dialer_engine_report_t *out, const char **msg)
{
    memset(out, 0, sizeof(*out));
    const char *result = json_string_value(json_object_get(rep, "result"));
    if (!json_is_object(rep)) {
        *msg = "must be a JSON object";
        return "";
    }
    if (result == NULL || (strcmp(result, "completed") != 0 && strcmp(result, "voicemail") != 0)) {
        *msg = "must be \"completed\" or \"voicemail\"";
        return "result";
    }
    /* a recording may come with either result (a voicemail box can be recorded too) */
    json_t *recording = json_object_get(rep, "recording");
    const char *field;
    out->has_recording = recording != NULL && !json_is_null(recording);
    if (out->has_recording && od_call_recording_parse(recording, &out->rec, &field, msg) != 0)
        return field;
    if (strcmp(result, "voicemail") == 0) {
        out->report = ENGINE_REPORT_VOICEMAIL;
        return NULL;
    }
    json_t *goal = json_object_get(rep, "goal_completed");
    const char *name = json_string_value(json_object_get(rep, "outcome"));
    int outcome = name != NULL ? od_outcome_parse(name) : -1;
    if (outcome <= (int)OD_OUTCOME_NONE) {
        *msg = "must be one of success, middle, spam";
        return "outcome";
    }
    if (goal != NULL && !json_is_boolean(goal)) {
        *msg = "must be true or false";
        return "goal_completed";
    }
    json_t *opt = json_object_get(rep, "opted_out");
    if (opt != NULL && !json_is_boolean(opt)) {
        *msg = "must be true or false";
        return "opted_out";
    }
    out->report = ENGINE_REPORT_COMPLETED;
    out->outcome = (od_outcome_t)outcome;
    out->goal = json_is_true(goal);
    out->opted_out = json_is_true(opt);
    return NULL;
}
