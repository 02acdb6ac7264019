/* The retry policy's settings as text (od/retry.h). */
#include "od/retry.h"

#include <string.h>

static const char *const on_json[4] = {"[]", "[\"no_answer\"]", "[\"busy\"]", "[\"no_answer\",\"busy\"]"};
static const char *const on_pg[4] = {"{}", "{no_answer}", "{busy}", "{no_answer,busy}"};

/* A decimal integer from 1 to max, digits only (no sign, no spaces); else -1. */
static int parse_bounded(const char *s, int max)
{
    long v = 0;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > max)
            return -1;
    }
    return v >= 1 ? (int)v : -1;
}

static int parse_on(const char *s)
{
    int on = 0;
    while (*s != '\0') {
        while (*s == ' ')
            s++;
        size_t len = strcspn(s, ",");
        size_t word = len;
        while (word > 0 && s[word - 1] == ' ')
            word--;
        if (word == 9 && memcmp(s, "no_answer", 9) == 0)
            on |= OD_RETRY_NO_ANSWER;
        else if (word == 4 && memcmp(s, "busy", 4) == 0)
            on |= OD_RETRY_BUSY;
        else if (!(word == 0 && s[len] == '\0' && on == 0))
            return -1; /* an unknown state, or an empty item between commas */
        s += len;
        if (*s == ',') {
            s++;
            if (*s == '\0')
                return -1; /* a trailing comma */
        }
    }
    return on;
}

int od_retry_policy_parse(const char *on, const char *max_attempts, const char *delay_s, od_retry_policy_t *out,
                          od_retry_error_t *err)
{
    out->on = -1;
    out->max_attempts = 0;
    out->delay_s = 0;
    if (on != NULL && (out->on = parse_on(on)) < 0) {
        *err = (od_retry_error_t){"retry_on", "invalid_retry_on",
                                  "retry_on is a comma-separated list of no_answer and busy (empty: none)"};
        return -1;
    }
    if (max_attempts != NULL && (out->max_attempts = parse_bounded(max_attempts, OD_RETRY_MAX_ATTEMPTS)) < 0) {
        *err = (od_retry_error_t){"retry_max_attempts", "invalid_retry_max_attempts",
                                  "retry_max_attempts is an integer from 1 to 10 (the first call counts; 1: no retry)"};
        return -1;
    }
    if (delay_s != NULL && (out->delay_s = parse_bounded(delay_s, OD_RETRY_MAX_DELAY_S)) < 0) {
        *err = (od_retry_error_t){"retry_delay_s", "invalid_retry_delay_s",
                                  "retry_delay_s is an integer number of seconds from 1 to 604800 (a week)"};
        return -1;
    }
    return 0;
}

int od_retry_policy_given(const od_retry_policy_t *p)
{
    return p->on >= 0 || p->max_attempts > 0 || p->delay_s > 0;
}

const char *od_retry_on_json(int on)
{
    return on_json[on & 3];
}

const char *od_retry_on_pg(int on)
{
    return on_pg[on & 3];
}
