/*
 * The retry policy of a project or a batch (README "Retries"): which final
 * states are called again (no_answer, busy; never others), how many
 * attempts a call gets in all (the first counts: 1 is no retry), and the
 * delay between an attempt's end and the next. Parsed here from the text
 * the upload fields and outdialctl take; applied by od_retry in PostgreSQL
 * (proto/sql/014_retries.sql), whose CHECKs hold the same bounds.
 */
#ifndef OD_RETRY_H
#define OD_RETRY_H

#define OD_RETRY_NO_ANSWER 1 /**< bit of od_retry_policy_t.on: retry no_answer */
#define OD_RETRY_BUSY 2      /**< bit of od_retry_policy_t.on: retry busy */
#define OD_RETRY_MAX_ATTEMPTS 10
#define OD_RETRY_MAX_DELAY_S 604800 /* a week */

/** A policy as given: each setting may be absent. */
typedef struct od_retry_policy {
    int on;           /**< OD_RETRY_NO_ANSWER | OD_RETRY_BUSY (0: none); -1: not given */
    int max_attempts; /**< 1..OD_RETRY_MAX_ATTEMPTS, counting the first call; 0: not given */
    int delay_s;      /**< 1..OD_RETRY_MAX_DELAY_S; 0: not given */
} od_retry_policy_t;

/** A problem with a setting: the field at fault (upload field names), a stable code, a sentence. */
typedef struct od_retry_error {
    const char *field;  /**< "retry_on", "retry_max_attempts" or "retry_delay_s" */
    const char *code;   /**< "invalid_retry_on", "invalid_retry_max_attempts", "invalid_retry_delay_s" */
    const char *detail; /**< what is accepted */
} od_retry_error_t;

/**
 * Parses the three settings, each NULL when not given: `on`, a
 * comma-separated list of no_answer and busy (spaces around items allowed,
 * repeats harmless, empty: none); `max_attempts`, an integer from 1 to 10;
 * `delay_s`, an integer from 1 to 604800 (decimal digits only). Returns 0,
 * or -1 with `err` naming the first setting at fault (out is then partly set).
 */
int od_retry_policy_parse(const char *on, const char *max_attempts, const char *delay_s, od_retry_policy_t *out,
                          od_retry_error_t *err);

/** 1 if any of the settings was given. */
int od_retry_policy_given(const od_retry_policy_t *p);

/** `on` (0..3) as a JSON array, in the order no_answer, busy: "[]", "[\"no_answer\"]", ... (static). */
const char *od_retry_on_json(int on);

/** `on` (0..3) as a PostgreSQL array literal: "{}", "{no_answer}", "{busy}", "{no_answer,busy}" (static). */
const char *od_retry_on_pg(int on);

#endif
