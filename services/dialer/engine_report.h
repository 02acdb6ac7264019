/*
 * A conversation engine's report (proto/engine.md), read in memory: pure,
 * so engine.c applies what it returns and the fuzz target
 * (fuzz/fuzz_engine_report.c) drives the same code.
 */
#ifndef OD_DIALER_ENGINE_REPORT_H
#define OD_DIALER_ENGINE_REPORT_H

#include <jansson.h>

#include "od/call.h"

typedef enum engine_report { ENGINE_REPORT_NONE, ENGINE_REPORT_COMPLETED, ENGINE_REPORT_VOICEMAIL } engine_report_t;

/** What a report says. */
typedef struct dialer_engine_report {
    engine_report_t report;  /**< COMPLETED or VOICEMAIL */
    od_outcome_t outcome;    /**< COMPLETED: success, middle or spam */
    int goal;                /**< COMPLETED: goal_completed was true */
    int opted_out;           /**< COMPLETED: the callee opted out */
    int has_recording;       /**< a recording came with it, in rec */
    od_call_recording_t rec;
} dialer_engine_report_t;

/**
 * Reads a report {"result": "completed" | "voicemail", "outcome",
 * "goal_completed", "opted_out", "recording"}. NULL and *out filled, or the
 * member at fault ("" for the whole) with *msg saying why.
 */
const char *dialer__engine_report_parse(json_t *rep, dialer_engine_report_t *out, const char **msg);

#endif
