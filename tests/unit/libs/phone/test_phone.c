/* Unit tests for od/phone.h: strict E.164 syntax, libphonenumber's
 * possibility check through the C++ shim, normalisation and regions. */
#include "od/phone.h"

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

int main(void)
{
    test_parse_table();
    test_misc();
    test_region();
    test_regression_normalised_below_min_digits();
    if (failures) {
        fprintf(stderr, "test_phone: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_phone: ok\n");
    return 0;
}
