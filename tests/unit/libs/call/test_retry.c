/* The retry policy's settings as the upload fields and outdialctl take them. */
#include "od/retry.h"

#include <stddef.h>

#include "od_test.h"

static int on_of(const char *s)
{
    od_retry_policy_t p;
    od_retry_error_t e;
    return od_retry_policy_parse(s, NULL, NULL, &p, &e) == 0 ? p.on : -1;
}

static void test_on(void)
{
    CHECK(on_of("") == 0);
    CHECK(on_of("  ") == 0);
    CHECK(on_of("no_answer") == OD_RETRY_NO_ANSWER);
    CHECK(on_of("busy") == OD_RETRY_BUSY);
    CHECK(on_of("no_answer,busy") == (OD_RETRY_NO_ANSWER | OD_RETRY_BUSY));
    CHECK(on_of("busy, no_answer ") == (OD_RETRY_NO_ANSWER | OD_RETRY_BUSY));
    CHECK(on_of("busy,busy") == OD_RETRY_BUSY);
    /* never other states, no empty items, exact names */
    static const char *const bad[] = {"completed", "no_answer,voicemail_detected", "no_answer,", ",busy", "busy,,busy",
                                      "NO_ANSWER", "no answer", "no_answer;busy", "busyx", "*"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        CHECK(on_of(bad[i]) == -1);
    CHECK_STR(od_retry_on_json(0), "[]");
    CHECK_STR(od_retry_on_json(OD_RETRY_NO_ANSWER | OD_RETRY_BUSY), "[\"no_answer\",\"busy\"]");
    CHECK_STR(od_retry_on_pg(OD_RETRY_BUSY), "{busy}");
    CHECK_STR(od_retry_on_pg(0), "{}");
}

static void test_numbers_and_errors(void)
{
    od_retry_policy_t p;
    od_retry_error_t e = {0};
    CHECK(od_retry_policy_parse(NULL, NULL, NULL, &p, &e) == 0);
    CHECK(!od_retry_policy_given(&p));
    CHECK(od_retry_policy_parse(NULL, "3", "1800", &p, &e) == 0);
    CHECK(od_retry_policy_given(&p) && p.on == -1 && p.max_attempts == 3 && p.delay_s == 1800);
    CHECK(od_retry_policy_parse("busy", "1", "604800", &p, &e) == 0 && p.max_attempts == 1 && p.delay_s == 604800);
    CHECK(od_retry_policy_parse(NULL, "10", "1", &p, &e) == 0 && p.max_attempts == 10 && p.delay_s == 1);
    static const char *const bad_max[] = {"0", "11", "-1", "+3", " 3", "3 ", "3.0", "", "x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_max) / sizeof(bad_max[0]); i++) {
        e.field = NULL;
        CHECK(od_retry_policy_parse("busy", bad_max[i], "60", &p, &e) == -1);
        CHECK_STR(e.field, "retry_max_attempts");
        CHECK_STR(e.code, "invalid_retry_max_attempts");
    }
    static const char *const bad_delay[] = {"0", "604801", "1e3", "", "-5", "60s"};
    for (size_t i = 0; i < sizeof(bad_delay) / sizeof(bad_delay[0]); i++) {
        e.field = NULL;
        CHECK(od_retry_policy_parse(NULL, "2", bad_delay[i], &p, &e) == -1);
        CHECK_STR(e.field, "retry_delay_s");
        CHECK_STR(e.code, "invalid_retry_delay_s");
    }
    /* the first setting at fault is named */
    CHECK(od_retry_policy_parse("answered", "0", "0", &p, &e) == -1);
    CHECK_STR(e.field, "retry_on");
    CHECK_STR(e.code, "invalid_retry_on");
}

int main(void)
{
    test_on();
    test_numbers_and_errors();
    return od_test_result("test_retry");
}
