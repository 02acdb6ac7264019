/* Unit tests for od/rfc3339.h: table-driven parse and format cases, then
 * exhaustive day-by-day checks of the calendar arithmetic. */
#include "od/rfc3339.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int failures;
#define CHECK(cond, ...)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            failures++;                                                                    \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

/* S() keeps the length of a literal, so embedded NULs are part of the input. */
#define S(lit) lit, sizeof(lit) - 1
#define BAD INT64_MIN /* expected value meaning "must be rejected" */

struct parse_case {
    const char *s;
    size_t len;
    int64_t us;
};

static const struct parse_case parse_cases[] = {
    /* basics */
    {S("1970-01-01T00:00:00Z"), 0},
    {S("1970-01-01t00:00:00z"), 0},
    {S("2026-11-23T19:52:10.123Z"), INT64_C(1795463530123000)},
    {S("2026-11-23T20:52:10.123+01:00"), INT64_C(1795463530123000)},
    {S("2026-11-23T14:22:10.123-05:30"), INT64_C(1795463530123000)},
    {S("1970-01-01T00:00:00-00:00"), 0},
    {S("1970-01-01T00:00:00+00:00"), 0},
    {S("1969-12-31T23:59:59.999999Z"), -1},
    {S("1969-12-31T23:59:59.9999999Z"), -1}, /* truncated, not rounded */
    {S("1969-12-31T23:59:59Z"), -1000000},
    /* fractions: 1..9 digits, truncated to µs */
    {S("1970-01-01T00:00:00.1Z"), 100000},
    {S("1970-01-01T00:00:00.12Z"), 120000},
    {S("1970-01-01T00:00:00.000001Z"), 1},
    {S("1970-01-01T00:00:00.0000009Z"), 0},
    {S("1970-01-01T00:00:00.123456789Z"), 123456},
    {S("1970-01-01T00:00:00.999999999Z"), 999999},
    {S("1970-01-01T00:00:00.1234567890Z"), BAD}, /* 10 digits */
    {S("1970-01-01T00:00:00.Z"), BAD},
    {S("1970-01-01T00:00:00,5Z"), BAD},
    {S("1970-01-01T00:00:00.5.5Z"), BAD},
    /* leap years */
    {S("2000-02-29T00:00:00Z"), INT64_C(951782400000000)},
    {S("2024-02-29T12:00:00Z"), INT64_C(1709208000000000)},
    {S("1900-02-29T00:00:00Z"), BAD},
    {S("1900-03-01T00:00:00Z"), INT64_C(-2203891200000000)},
    {S("2023-02-29T00:00:00Z"), BAD},
    {S("2100-02-29T00:00:00Z"), BAD},
    {S("2400-02-29T00:00:00Z"), INT64_C(13574563200000000)},
    {S("2024-02-30T00:00:00Z"), BAD},
    /* month lengths */
    {S("2025-01-31T00:00:00Z"), INT64_C(1738281600000000)},
    {S("2025-04-31T00:00:00Z"), BAD},
    {S("2025-06-31T00:00:00Z"), BAD},
    {S("2025-09-31T00:00:00Z"), BAD},
    {S("2025-11-31T00:00:00Z"), BAD},
    {S("2025-12-31T00:00:00Z"), INT64_C(1767139200000000)},
    {S("2025-00-10T00:00:00Z"), BAD},
    {S("2025-13-10T00:00:00Z"), BAD},
    {S("2025-01-00T00:00:00Z"), BAD},
    {S("2025-01-32T00:00:00Z"), BAD},
    /* time fields */
    {S("2025-01-01T23:59:59Z"), INT64_C(1735775999000000)},
    {S("2025-01-01T24:00:00Z"), BAD},
    {S("2025-01-01T23:60:00Z"), BAD},
    {S("2025-01-01T23:59:61Z"), BAD},
    {S("2025-01-01T00:00Z"), BAD}, /* seconds are required */
    /* offsets crossing midnight and the year boundary */
    {S("2025-01-01T00:30:00+01:00"), INT64_C(1735687800000000)}, /* 2024-12-31T23:30Z */
    {S("2024-12-31T23:30:00-01:00"), INT64_C(1735691400000000)}, /* 2025-01-01T00:30Z */
    {S("2024-03-01T00:00:00+23:59"), INT64_C(1709164860000000)}, /* 2024-02-29T00:01Z */
    {S("2025-01-01T00:00:00+23:59"), INT64_C(1735603260000000)},
    {S("2025-01-01T00:00:00-23:59"), INT64_C(1735775940000000)},
    {S("2025-01-01T00:00:00+24:00"), BAD},
    {S("2025-01-01T00:00:00+00:60"), BAD},
    {S("2025-01-01T00:00:00+0100"), BAD},
    {S("2025-01-01T00:00:00+01"), BAD},
    {S("2025-01-01T00:00:00+01:0"), BAD},
    {S("2025-01-01T00:00:00 +01:00"), BAD},
    /* leap second: only at 23:59:60 UTC, clamped to 23:59:59.999999 */
    {S("2016-12-31T23:59:60Z"), INT64_C(1483228799999999)},
    {S("2016-12-31T23:59:60.5Z"), INT64_C(1483228799999999)},
    {S("2017-01-01T00:59:60+01:00"), INT64_C(1483228799999999)},
    {S("2016-12-31T18:59:60-05:00"), INT64_C(1483228799999999)},
    {S("2016-12-31T23:59:60+01:00"), BAD}, /* 22:59:60 UTC */
    {S("2016-12-31T12:00:60Z"), BAD},
    /* year range, also after applying the offset */
    /* regression: year 0000 reached PostgreSQL, which refused it, and
     * GET /v1/calls?since=0000-01-01T00:00:00Z was answered 503 */
    {S("0000-01-01T00:00:00Z"), BAD},
    {S("0000-02-29T00:00:00Z"), BAD},
    {S("0000-12-31T23:59:59.999999Z"), BAD},
    {S("0001-01-01T00:00:00Z"), INT64_C(-62135596800000000)},
    {S("0001-01-01T00:00:00+00:01"), BAD},
    {S("0001-01-01T00:00:00-00:01"), INT64_C(-62135596740000000)},
    {S("9999-12-31T23:59:59.999999Z"), INT64_C(253402300799999999)},
    {S("9999-12-31T23:59:59.999999999Z"), INT64_C(253402300799999999)},
    {S("0000-01-01T00:00:00+00:01"), BAD},
    {S("9999-12-31T23:59:00-00:01"), BAD},
    {S("9999-12-31T23:59:00+00:01"), INT64_C(253402300680000000)},
    {S("10000-01-01T00:00:00Z"), BAD},
    {S("-001-01-01T00:00:00Z"), BAD},
    /* syntax */
    {S(""), BAD},
    {S("2025-01-01"), BAD},
    {S("2025-01-01T00:00:00"), BAD}, /* offset is required */
    {S("2025-01-01 00:00:00Z"), BAD},
    {S("2025-01-01_00:00:00Z"), BAD},
    {S("2025/01/01T00:00:00Z"), BAD},
    {S("2025-1-01T00:00:00Z"), BAD},
    {S("2025-01-01T0:00:00Z"), BAD},
    {S("+025-01-01T00:00:00Z"), BAD},
    {S("2025-01-01T00:00:00ZZ"), BAD},
    {S("2025-01-01T00:00:00Z "), BAD},
    {S(" 2025-01-01T00:00:00Z"), BAD},
    {S("2025-01-01T00:00:00+01:00Z"), BAD},
    {S("2025-01-01T00:00:00UTC"), BAD},
    {S("2025-01-01T00:00:00.123"), BAD},
    {S("２０２５-01-01T00:00:00Z"), BAD},
    {S("2025-01-01T00:00:00Z\0"), BAD},
    {S("2025-01-01T00:00:00\0Z"), BAD},
    {S("2025-01-01T00:00:00.1\0"), BAD},
    {S("2025-01-01T00:00:00+01:0\0"), BAD},
    {S("2025\0-01-01T00:00:00Z"), BAD},
};

static void test_parse_table(void)
{
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        const struct parse_case *c = &parse_cases[i];
        int64_t got = 42;
        const char *err = NULL;
        int rc = od_rfc3339_parse(c->s, c->len, &got, &err);
        if (c->us == BAD) {
            CHECK(rc == -1, "case %zu \"%s\" accepted as %" PRId64, i, c->s, got);
            CHECK(rc == 0 || (err && strcmp(err, "invalid_datetime") == 0), "case %zu errcode", i);
            CHECK(rc == 0 || got == 42, "case %zu: output written on failure", i);
        } else {
            CHECK(rc == 0, "case %zu \"%s\" rejected", i, c->s);
            CHECK(rc != 0 || got == c->us, "case %zu \"%s\": %" PRId64 " != %" PRId64, i, c->s, got, c->us);
        }
    }
    /* errcode may be NULL */
    int64_t v;
    CHECK(od_rfc3339_parse(S("nope"), &v, NULL) == -1, "NULL errcode");
}

static void test_truncated_prefixes(void)
{
    /* Every proper prefix of a valid timestamp is invalid, except a prefix
     * that ends just before a fraction's later digits (".12" of ".123Z"
     * without the "Z" is still invalid: no offset). */
    static const char full[] = "2026-11-23T20:52:10.123456789+01:00";
    for (size_t n = 0; n < sizeof full - 1; n++) {
        int64_t v;
        CHECK(od_rfc3339_parse(full, n, &v, NULL) == -1, "prefix of length %zu accepted", n);
    }
    int64_t v;
    CHECK(od_rfc3339_parse(full, sizeof full - 1, &v, NULL) == 0 && v == INT64_C(1795463530123456), "full");
}

struct format_case {
    int64_t us;
    const char *want;
};

static const struct format_case format_cases[] = {
    {0, "1970-01-01T00:00:00.000Z"},
    {1, "1970-01-01T00:00:00.000Z"},
    {999, "1970-01-01T00:00:00.000Z"},
    {1000, "1970-01-01T00:00:00.001Z"},
    {-1, "1969-12-31T23:59:59.999Z"}, /* truncated toward the past */
    {-1000, "1969-12-31T23:59:59.999Z"},
    {-1001, "1969-12-31T23:59:59.998Z"},
    {-1000000, "1969-12-31T23:59:59.000Z"},
    {INT64_C(1795463530123000), "2026-11-23T19:52:10.123Z"},
    {INT64_C(1795463530123999), "2026-11-23T19:52:10.123Z"},
    {INT64_C(951782400000000), "2000-02-29T00:00:00.000Z"},
    {INT64_C(1709208000000000), "2024-02-29T12:00:00.000Z"},
    {INT64_C(-2203891200000000), "1900-03-01T00:00:00.000Z"},
    {INT64_C(1483228799999999), "2016-12-31T23:59:59.999Z"},
    {INT64_C(-62135596800000000), "0001-01-01T00:00:00.000Z"},
    {INT64_C(-62167219200000000), ""}, /* year 0: PostgreSQL has none */
    {INT64_C(-62162121600000000), ""},
    {INT64_C(253402300799999999), "9999-12-31T23:59:59.999Z"},
    {INT64_C(-62135596800000000) - 1, ""},
    {INT64_C(253402300799999999) + 1, ""},
    {INT64_MIN, ""},
    {INT64_MAX, ""},
};

static void test_format_table(void)
{
    for (size_t i = 0; i < sizeof format_cases / sizeof format_cases[0]; i++) {
        const struct format_case *c = &format_cases[i];
        char buf[OD_RFC3339_BUF_SIZE];
        memset(buf, 'x', sizeof buf);
        size_t n = od_rfc3339_format(c->us, buf);
        CHECK(n == strlen(c->want) && strcmp(buf, c->want) == 0, "format(%" PRId64 ") = \"%s\" (%zu), want \"%s\"",
              c->us, buf, n, c->want);
    }
}

/* Walks every day from 0000-01-01 to 9999-12-31 with a naive calendar and
 * checks parse and format agree with it at a few times of day. */
static void test_every_day(void)
{
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t day_us = INT64_C(-62167219200000000);
    int bad = 0;
    for (int y = 0; y <= 9999 && bad < 10; y++) {
        int leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        for (int m = 1; m <= 12; m++) {
            int nd = mdays[m - 1] + (m == 2 && leap);
            for (int d = 1; d <= nd + 1; d++) {
                char s[64], want[64], got[OD_RFC3339_BUF_SIZE];
                int64_t v = 0;
                snprintf(s, sizeof s, "%04d-%02d-%02dT13:07:45.678Z", y, m, d);
                int rc = od_rfc3339_parse(s, strlen(s), &v, NULL);
                if (d > nd) { /* one past the month's end */
                    if (rc != -1) {
                        bad++;
                        CHECK(0, "%s accepted", s);
                    }
                    continue;
                }
                int64_t expect = day_us + ((13 * 60 + 7) * 60 + 45) * INT64_C(1000000) + 678000;
                if (y == 0 ? rc != -1 : (rc != 0 || v != expect)) { /* no year 0 in PostgreSQL, so none here */
                    bad++;
                    CHECK(0, "%s: rc %d, %" PRId64 " != %" PRId64, s, rc, v, expect);
                }
                snprintf(want, sizeof want, y == 0 ? "" : "%04d-%02d-%02dT00:00:00.000Z", y, m, d);
                od_rfc3339_format(day_us, got);
                if (strcmp(got, want) != 0) {
                    bad++;
                    CHECK(0, "format(%" PRId64 ") = %s, want %s", day_us, got, want);
                }
                od_rfc3339_format(day_us - 1, got); /* the last ms of the day before */
                if (y > 1 || (y == 1 && (m > 1 || d > 1))) {
                    if (strcmp(got + 10, "T23:59:59.999Z") != 0) {
                        bad++;
                        CHECK(0, "format(%" PRId64 ") = %s", day_us - 1, got);
                    }
                }
                day_us += INT64_C(86400000000);
            }
        }
    }
    CHECK(day_us == INT64_C(253402300800000000), "walk ended at %" PRId64, day_us);
}

int main(void)
{
    test_parse_table();
    test_truncated_prefixes();
    test_format_table();
    test_every_day();
    if (failures) {
        fprintf(stderr, "test_rfc3339: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_rfc3339: ok\n");
    return 0;
}
