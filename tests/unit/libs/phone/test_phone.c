/* Unit tests for od/phone.h: strict E.164 syntax, libphonenumber's
 * possibility check through the C++ shim, normalisation, regions and time
 * zones. */
#include "od/phone.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

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

struct parse_case {
    const char *s;
    size_t len;
    const char *want; /* normalised number, or the expected error code */
};

static const struct parse_case parse_cases[] = {
    /* possible (not necessarily valid: +34 123… is no assigned Spanish range) */
    {S("+34123456789"), "+34123456789"},
    {S("+34123456780"), "+34123456780"},
    {S("+15005550006"), "+15005550006"},
    {S("+442071838750"), "+442071838750"},
    {S("+12025550123"), "+12025550123"},
    {S("+33612345678"), "+33612345678"},
    {S("+4915123456789"), "+4915123456789"},
    {S("+79161234567"), "+79161234567"},
    {S("+390612345678"), "+390612345678"}, /* Italian leading zero is kept */
    {S("+5491123456789"), "+5491123456789"},
    {S("+80012345678"), "+80012345678"}, /* non-geographic (freephone) */
    /* normalised: national prefix "0" after the country code is dropped */
    {S("+4407911123456"), "+447911123456"},
    {S("+4402071838750"), "+442071838750"},
    /* syntax */
    {S(""), "invalid_phone"},
    {S("+"), "invalid_phone"},
    {S("+1234"), "invalid_phone"},
    {S("+1234567"), "invalid_phone"},         /* 7 digits: below our minimum */
    {S("+0123456789"), "invalid_phone"},      /* country code cannot start with 0 */
    {S("34123456789"), "invalid_phone"},
    {S("0034123456789"), "invalid_phone"},
    {S("++34123456789"), "invalid_phone"},
    {S("+34 123"), "invalid_phone"},
    {S("+34 123 456 789"), "invalid_phone"},
    {S("+34-123-456-789"), "invalid_phone"},
    {S("+(34)123456789"), "invalid_phone"},
    {S(" +34123456789"), "invalid_phone"},
    {S("+34123456789 "), "invalid_phone"},
    {S("+34123456789\n"), "invalid_phone"},
    {S("+3412345678901234"), "invalid_phone"}, /* 16 digits */
    {S("+1202555012x"), "invalid_phone"},
    {S("+12025550123;ext=1"), "invalid_phone"},
    {S("+1202555O123"), "invalid_phone"},     /* letter O */
    {S("+１２０２５５５０１２３"), "invalid_phone"}, /* fullwidth digits */
    {S("+34123456789\0"), "invalid_phone"},
    {S("+3412345\0" "6789"), "invalid_phone"},
    {S("\0+34123456789"), "invalid_phone"},
    /* syntactically fine, not possible */
    {S("+999123456789"), "phone_not_possible"}, /* no such country code */
    {S("+2125551234"), "phone_not_possible"},   /* Morocco, too short */
    {S("+35312345"), "phone_not_possible"},
    {S("+15550006"), "phone_not_possible"},    /* US local-only (no area code) */
    {S("+341234567890"), "phone_not_possible"}, /* Spain, too long */
    {S("+123456789012345"), "phone_not_possible"},
};

static void test_parse_table(void)
{
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        const struct parse_case *c = &parse_cases[i];
        char out[OD_PHONE_E164_SIZE];
        memset(out, 'x', sizeof out);
        const char *err = "unset";
        int rc = od_phone_parse_e164(c->s, c->len, out, &err);
        if (c->want[0] == '+') {
            CHECK(rc == 0, "case %zu \"%s\" rejected: %s", i, c->s, err);
            CHECK(rc != 0 || strcmp(out, c->want) == 0, "case %zu \"%s\" gave \"%s\"", i, c->s, out);
        } else {
            CHECK(rc == -1, "case %zu \"%s\" accepted as \"%.16s\"", i, c->s, out);
            CHECK(rc == 0 || strcmp(err, c->want) == 0, "case %zu \"%s\": %s, want %s", i, c->s, err, c->want);
            CHECK(rc == 0 || out[0] == '\0', "case %zu: out not emptied", i);
        }
    }
}

static void test_misc(void)
{
    char out[OD_PHONE_E164_SIZE];
    /* errcode may be NULL */
    CHECK(od_phone_parse_e164(S("+1234"), out, NULL) == -1, "NULL errcode");
    /* the length bounds the input: a longer buffer is fine */
    const char *buf = "+34123456789999";
    CHECK(od_phone_parse_e164(buf, 12, out, NULL) == 0 && strcmp(out, "+34123456789") == 0, "prefix");
    /* the output always fits: the longest possible input */
    CHECK(od_phone_parse_e164(S("+491234567890123"), out, NULL) == 0 || out[0] == '\0', "15 digits");
    /* parsing the output again gives the same output */
    for (size_t i = 0; i < sizeof parse_cases / sizeof parse_cases[0]; i++) {
        char again[OD_PHONE_E164_SIZE];
        if (od_phone_parse_e164(parse_cases[i].s, parse_cases[i].len, out, NULL) != 0)
            continue;
        CHECK(od_phone_parse_e164(out, strlen(out), again, NULL) == 0 && strcmp(out, again) == 0,
              "not idempotent: %s", out);
    }
}

struct region_case {
    const char *e164;
    int rc;
    const char *region;
};

static const struct region_case region_cases[] = {
    {"+34123456789", 0, "ES"},
    {"+34612345678", 0, "ES"},
    {"+442071838750", 0, "GB"},
    {"+12025550123", 0, "US"},
    {"+14165550123", 0, "CA"},
    {"+79161234567", 0, "RU"},
    {"+33612345678", 0, "FR"},
    {"+80012345678", 0, "ZZ"},  /* non-geographic: libphonenumber's "001" */
    {"+882123456789", 0, "ZZ"},
    {"+999123456789", -1, "ZZ"},
    {"+34 123", -1, "ZZ"},      /* not our syntax */
    {"34123456789", -1, "ZZ"},
    {"", -1, "ZZ"},
    {"+3412345678901234567890", -1, "ZZ"},
};

static void test_region(void)
{
    for (size_t i = 0; i < sizeof region_cases / sizeof region_cases[0]; i++) {
        const struct region_case *c = &region_cases[i];
        char region[3] = "xx";
        int rc = od_phone_region(c->e164, region);
        CHECK(rc == c->rc && strcmp(region, c->region) == 0, "region(%s) = %d \"%s\", want %d \"%s\"", c->e164,
              rc, region, c->rc, c->region);
    }
}

/* fuzz_phone: dropping the national prefix of "+43036586" gave "+4336586",
 * which od_phone_parse_e164 itself rejects (7 digits). The output must be a
 * fixed point, so such numbers are refused. */
static void test_regression_normalised_below_min_digits(void)
{
    char out[OD_PHONE_E164_SIZE], again[OD_PHONE_E164_SIZE];
    const char *err = NULL;
    CHECK(od_phone_parse_e164(S("+43036586"), out, &err) == -1 && strcmp(err, "phone_not_possible") == 0,
          "+43036586 gave \"%s\"", out);
    /* one digit more leaves 8 digits after normalisation: fine */
    CHECK(od_phone_parse_e164(S("+430365861"), out, &err) == 0 && strcmp(out, "+43365861") == 0, "got %s", out);
    CHECK(od_phone_parse_e164(out, strlen(out), again, &err) == 0 && strcmp(again, out) == 0, "again %s", again);
}

struct tz_case {
    const char *e164;
    int rc;
    const char *zones;
};

static const struct tz_case tz_cases[] = {
    /* USA: the area code decides; 480 (Arizona) is both Phoenix (no DST) and Denver */
    {"+12125550100", 1, "America/New_York"},
    {"+12135550100", 1, "America/Los_Angeles"},
    {"+18085550100", 1, "Pacific/Honolulu"},
    {"+14805550100", 2, "America/Denver,America/Phoenix"},
    {"+14165550123", 1, "America/Toronto"},
    /* several zones in one country, told apart by the area */
    {"+61291234560", 1, "Australia/Sydney"},                    /* 02: NSW */
    {"+61891234560", 2, "Australia/Adelaide,Australia/Perth"},  /* 08: WA and SA share it */
    {"+79161234567", 1, "Europe/Moscow"},
    {"+74232123456", 1, "Asia/Vladivostok"},
    {"+526641234567", 1, "America/Tijuana"},
    {"+556621234567", 1, "America/Manaus"},
    /* a single-zone country */
    {"+4915123456789", 1, "Europe/Berlin"},
    {"+33612345678", 1, "Europe/Paris"},
    /* Spain: +34 123... is possible but not valid: the country's zones (Canary Islands included) */
    {"+34123456789", 2, "Atlantic/Canary,Europe/Madrid"},
    /* toll-free: its country calling code's zones, every one of +1's */
    {"+18005550100", 42, NULL},
    /* no zone at all: non-geographic codes */
    {"+80012345678", 0, ""},
    {"+882123456789", 0, ""},
    /* not our syntax, or not parseable */
    {"12125550100", -1, ""},
    {"+1 212", -1, ""},
    {"", -1, ""},
};

static void test_time_zones(void)
{
    for (size_t i = 0; i < sizeof tz_cases / sizeof tz_cases[0]; i++) {
        const struct tz_case *c = &tz_cases[i];
        const char *zones = "unset";
        int rc = od_phone_time_zones(c->e164, &zones);
        CHECK(rc == c->rc, "time_zones(%s) = %d, want %d (%s)", c->e164, rc, c->rc, zones);
        CHECK(c->zones == NULL || strcmp(zones, c->zones) == 0, "time_zones(%s) = \"%s\", want \"%s\"", c->e164,
              zones, c->zones);
    }
    const char *zones;
    CHECK(od_phone_time_zones("+18005550100", &zones) == 42 && strstr(zones, "America/New_York") != NULL &&
              strstr(zones, "Pacific/Honolulu") != NULL,
          "toll-free +1: %s", zones);
    CHECK(strlen(od_phone_tz_data_version()) > 0, "no data version");
}

/* Every zone of the table exists in the system's tzdata, which PostgreSQL
 * (--with-system-tzdata) uses to apply calling windows: the widest number
 * of each country code gives every zone of the table. */
static void test_time_zones_in_tzdata(void)
{
    int checked = 0;
    for (int cc = 1; cc < 1000; cc++) {
        char e164[OD_PHONE_E164_SIZE], norm[OD_PHONE_E164_SIZE];
        snprintf(e164, sizeof e164, "+%d800123456", cc); /* toll-free-ish: country-level zones */
        const char *zones;
        if (od_phone_parse_e164(e164, strlen(e164), norm, NULL) != 0 || od_phone_time_zones(norm, &zones) <= 0)
            continue;
        for (const char *p = zones; *p != '\0';) {
            size_t n = strcspn(p, ",");
            char path[256];
            snprintf(path, sizeof path, "/usr/share/zoneinfo/%.*s", (int)n, p);
            struct stat st;
            CHECK(stat(path, &st) == 0, "zone %.*s of +%d not in the system tzdata", (int)n, p, cc);
            checked++;
            p += n + (p[n] == ',');
        }
    }
    CHECK(checked > 200, "only %d zones checked", checked);
}

int main(void)
{
    test_parse_table();
    test_misc();
    test_region();
    test_regression_normalised_below_min_digits();
    test_time_zones();
    test_time_zones_in_tzdata();
    if (failures) {
        fprintf(stderr, "test_phone: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_phone: ok\n");
    return 0;
}
