#include "od/rfc3339.h"

#include <assert.h>
#include <stdbool.h>

#define US_PER_S INT64_C(1000000)
#define S_PER_DAY INT64_C(86400)

/*
 * Days since 1970-01-01 of a proleptic Gregorian date, and back (Howard
 * Hinnant's algorithms, http://howardhinnant.github.io/date_algorithms.html):
 * shift the year to start in March so the leap day is the last day of the
 * year, then count 400-year eras of 146097 days.
 */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                             /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;     /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The instants both functions handle: years 0001–9999 UTC. Every parsed
 * time goes to PostgreSQL, which has no year 0 (it is 1 BC) and refuses
 * "0000-01-01"; so does the API. */
#define MIN_US (INT64_C(-719162) * S_PER_DAY * US_PER_S)       /* 0001-01-01 */
#define MAX_US (INT64_C(2932897) * S_PER_DAY * US_PER_S - 1)   /* 10000-01-01 minus 1 µs */

static bool is_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

static int days_in_month(int64_t y, int m)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : mdays[m - 1];
}

/* `n` ASCII digits at `p` as a number, or -1. Not isdigit(): no locale. */
static int digits(const char *p, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    return v;
}

static int fail(const char **errcode)
{
    if (errcode)
        *errcode = "invalid_datetime";
    return -1;
}

int od_rfc3339_parse(const char *s, size_t len, int64_t *out_us, const char **errcode)
{
    assert(s != NULL || len == 0);
    /* Fixed part: "YYYY-MM-DDTHH:MM:SS" then at least "Z". */
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return fail(errcode);
    int year = digits(s, 4), mon = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), min = digits(s + 14, 2), sec = digits(s + 17, 2);
    if (year < 0 || mon < 1 || mon > 12 || day < 1 || day > days_in_month(year, mon) || hour < 0 ||
        hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 60)
        return fail(errcode);

    size_t i = 19;
    int64_t frac_us = 0;
    if (s[i] == '.') {
        size_t start = ++i;
        int64_t scale = 100000;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            frac_us += (s[i] - '0') * scale; /* digits past the 6th add 0 */
            scale /= 10;
            i++;
        }
        if (i == start || i - start > 9)
            return fail(errcode);
    }

    int offset_s;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        offset_s = 0;
        i++;
    } else if (i + 6 <= len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return fail(errcode);
        offset_s = (oh * 60 + om) * 60 * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return fail(errcode);
    }
    if (i != len) /* trailing bytes, including NULs */
        return fail(errcode);

    /* Local time minus offset = UTC. A leap second is computed as :59 and
     * must then land on 23:59:59 UTC. */
    int64_t t = days_from_civil(year, mon, day) * S_PER_DAY + hour * 3600 + min * 60 +
                (sec == 60 ? 59 : sec) - offset_s;
    if (sec == 60) {
        if (t - floor_div(t, S_PER_DAY) * S_PER_DAY != S_PER_DAY - 1)
            return fail(errcode);
        frac_us = US_PER_S - 1;
    }
    int64_t us = t * US_PER_S + frac_us;
    if (us < MIN_US || us > MAX_US)
        return fail(errcode);
    *out_us = us;
    return 0;
}

static char *put(char *p, int64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

size_t od_rfc3339_format(int64_t us, char buf[OD_RFC3339_BUF_SIZE])
{
    if (us < MIN_US || us > MAX_US) {
        buf[0] = '\0';
        return 0;
    }
    int64_t t = floor_div(us, US_PER_S);
    int64_t ms = (us - t * US_PER_S) / 1000;
    int64_t days = floor_div(t, S_PER_DAY);
    int64_t sod = t - days * S_PER_DAY;
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);

    char *p = buf;
    p = put(p, y, 4);
    *p++ = '-';
    p = put(p, m, 2);
    *p++ = '-';
    p = put(p, d, 2);
    *p++ = 'T';
    p = put(p, sod / 3600, 2);
    *p++ = ':';
    p = put(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put(p, sod % 60, 2);
    *p++ = '.';
    p = put(p, ms, 3);
    *p++ = 'Z';
    *p = '\0';
    return (size_t)(p - buf);
}
