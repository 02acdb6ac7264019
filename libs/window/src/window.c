#include "od/window.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "od/core.h"
#include "od/utf8.h"

static const char *const day_names[7] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

typedef struct {
    char *errstr;
    size_t errlen;
    char *field;
    size_t fieldlen;
} err_t;

__attribute__((format(printf, 4, 5))) static int fail(err_t *e, const char *name, const char *member,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->errstr, e->errlen, fmt, ap);
    va_end(ap);
    if (e->fieldlen > 0)
        snprintf(e->field, e->fieldlen, "%s%s", name, member);
    return -1;
}

/* "mon" (any case) -> 0..6, else -1 */
static int day_index(const char *s, size_t n)
{
    if (n != 3)
        return -1;
    for (int i = 0; i < 7; i++)
        if (strncasecmp(s, day_names[i], 3) == 0)
            return i;
    return -1;
}

/* "mon-fri,sun" -> bit i for day i; 0 if malformed */
static unsigned days_from_string(const char *s)
{
    unsigned mask = 0;
    while (1) {
        size_t n = strcspn(s, ",");
        const char *dash = memchr(s, '-', n);
        if (dash == NULL) {
            int d = day_index(s, n);
            if (d < 0)
                return 0;
            mask |= 1u << d;
        } else {
            int a = day_index(s, (size_t)(dash - s)), b = day_index(dash + 1, n - (size_t)(dash - s) - 1);
            if (a < 0 || b < 0)
                return 0;
            for (int d = a;; d = (d + 1) % 7) { /* "sun-thu" wraps */
                mask |= 1u << d;
                if (d == b)
                    break;
            }
        }
        if (s[n] == '\0')
            return mask;
        s += n + 1;
    }
}

/* "HH:MM" -> minutes of the day (0..1440; 24:00 only if allow_end), else -1 */
static int minutes(json_t *v, int allow_end)
{
    const char *s = json_string_value(v);
    if (s == NULL || json_string_length(v) != 5 || s[2] != ':')
        return -1;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -1;
    int h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
    if (m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_end)))
        return -1;
    return h * 60 + m;
}

static int parse_one(json_t *w, const char *name, json_t *out, err_t *e)
{
    if (!json_is_object(w))
        return fail(e, name, "", "each calling window is an object with days, from and to");
    const char *key;
    json_t *v;
    json_object_foreach(w, key, v) {
        if (strcmp(key, "days") != 0 && strcmp(key, "from") != 0 && strcmp(key, "to") != 0)
            return fail(e, name, "", "unknown member \"%.*s\" (a window has days, from and to)",
                        (int)od_utf8_cut(key, strlen(key), 40), key);
    }
    json_t *days = json_object_get(w, "days");
    unsigned mask = 0;
    if (json_is_string(days)) {
        if (strlen(json_string_value(days)) == json_string_length(days)) /* no NUL inside */
            mask = days_from_string(json_string_value(days));
    } else if (json_is_array(days)) {
        size_t i;
        json_array_foreach(days, i, v) {
            int d = json_is_string(v) ? day_index(json_string_value(v), json_string_length(v)) : -1;
            if (d < 0) {
                mask = 0;
                break;
            }
            mask |= 1u << d;
        }
    }
    if (mask == 0)
        return fail(e, name, ".days",
                    "days must be day names (mon tue wed thu fri sat sun) and ranges, e.g. \"mon-fri\" or "
                    "\"mon,wed,fri\", or an array of day names");
    int from = minutes(json_object_get(w, "from"), 0);
    if (from < 0)
        return fail(e, name, ".from", "from must be a local time \"HH:MM\" from 00:00 to 23:59");
    int to = minutes(json_object_get(w, "to"), 1);
    if (to < 0)
        return fail(e, name, ".to", "to must be a local time \"HH:MM\" up to 24:00");
    if (to <= from)
        return fail(e, name, ".to",
                    "to must be later than from (a window that crosses midnight is written as two windows)");
    json_t *arr = json_array();
    for (int d = 0; d < 7; d++)
        if (mask & (1u << d))
            json_array_append_new(arr, json_string(day_names[d]));
    char hm[2][16];
    snprintf(hm[0], sizeof hm[0], "%02d:%02d", from / 60, from % 60);
    snprintf(hm[1], sizeof hm[1], "%02d:%02d", to / 60, to % 60);
    json_array_append_new(out, json_pack("{s:o s:s s:s}", "days", arr, "from", hm[0], "to", hm[1]));
    return 0;
}

int od_window_parse(const char *text, size_t len, const char *name, char **canonical, char *errstr, size_t errlen,
                    char *field, size_t fieldlen)
{
    err_t e = {errstr, errlen, field, fieldlen};
    *canonical = NULL;
    json_error_t jerr;
    json_t *in = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (in == NULL)
        return fail(&e, name, "", "%s is not JSON: %.*s", name, (int)od_utf8_cut(jerr.text, strlen(jerr.text), 100),
                    jerr.text);
    int rc = 0;
    if (!json_is_array(in) || json_array_size(in) == 0 || json_array_size(in) > OD_WINDOW_MAX) {
        rc = fail(&e, name, "",
                  "%s must be an array of 1 to %d windows, e.g. [{\"days\":\"mon-fri\",\"from\":\"09:00\","
                  "\"to\":\"20:00\"}]",
                  name, OD_WINDOW_MAX);
    } else {
        json_t *out = json_array(), *w;
        size_t i;
        json_array_foreach(in, i, w) {
            char wname[64];
            snprintf(wname, sizeof wname, "%.40s[%zu]", name, i);
            if ((rc = parse_one(w, wname, out, &e)) != 0)
                break;
        }
        if (rc == 0)
            *canonical = json_dumps(out, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(out);
        if (rc == 0 && *canonical == NULL)
            abort(); /* jansson's allocation failed: out of memory aborts everywhere in outdial */
    }
    json_decref(in);
    return rc;
}
