/* Unit tests for od/window.h: calling windows as the API takes them and
 * their canonical form. */
#include "od/window.h"

#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/utf8.h"

#include "od_test.h"

static void ok(const char *in, const char *want)
{
    char *out, err[200] = "", field[64] = "";
    int rc = od_window_parse(in, strlen(in), "calling_windows", &out, err, sizeof err, field, sizeof field);
    CHECK(rc == 0);
    if (rc != 0)
        fprintf(stderr, "  %s refused: %s (%s)\n", in, err, field);
    else
        CHECK_STR(out, want);
    free(out);
}

static void bad(const char *in, const char *want_field)
{
    char *out = (char *)1, err[200] = "", field[64] = "";
    int rc = od_window_parse(in, strlen(in), "calling_windows", &out, err, sizeof err, field, sizeof field);
    CHECK(rc == -1);
    CHECK(out == NULL);
    CHECK(err[0] != '\0');
    CHECK_STR(field, want_field);
    if (rc == 0)
        free(out);
}

/* found by fuzz_batch_settings: "%.40s" of a member name cut a UTF-8 sequence, and the problem's JSON was not UTF-8 */
static void test_unknown_member_cut_utf8(void)
{
    char *out, err[200] = "", field[64] = "";
    const char *in = "[{\"days\":\"mon\",\"from\":\"09:00\",\"to\":\"10:00\",\"zz\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                     "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\":1}]";
    CHECK(od_window_parse(in, strlen(in), "calling_windows", &out, err, sizeof err, field, sizeof field) == -1);
    CHECK(od_utf8_check(err, strlen(err)) == 0);
    CHECK(strstr(err, "\"zz\xc3\xa9") != NULL);
    /* and a JSON error's text, cut at 100 bytes */
    const char *bad = "[\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                      "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                      "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9x";
    CHECK(od_window_parse(bad, strlen(bad), "calling_windows", &out, err, sizeof err, field, sizeof field) == -1);
    CHECK(od_utf8_check(err, strlen(err)) == 0);
    /* jansson's own text cuts a sequence: "invalid escape near '"day\xc3'" (fuzz_window) */
    const char *esc = "[{\"day\xc3\xa9\\\xc3\xa9\xc3\xa9\xc3\xa9\xc3\x30}]";
    CHECK(od_window_parse(esc, strlen(esc), "calling_windows", &out, err, sizeof err, field, sizeof field) == -1);
    CHECK(od_utf8_check(err, strlen(err)) == 0);
    CHECK(strstr(err, "invalid escape") != NULL);
}

int main(void)
{
    test_unknown_member_cut_utf8();
    ok("[{\"days\":\"mon-fri\",\"from\":\"09:00\",\"to\":\"20:00\"},{\"days\":\"sat\",\"from\":\"10:00\",\"to\":\"14:00\"}]",
       "[{\"days\":[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\"],\"from\":\"09:00\",\"to\":\"20:00\"},"
       "{\"days\":[\"sat\"],\"from\":\"10:00\",\"to\":\"14:00\"}]");
    /* ranges wrap past Sunday; lists, repeats and case are normalised */
    ok("[{\"days\":\"sun-tue\",\"from\":\"00:00\",\"to\":\"24:00\"}]",
       "[{\"days\":[\"mon\",\"tue\",\"sun\"],\"from\":\"00:00\",\"to\":\"24:00\"}]");
    ok("[{\"days\":\"Fri,mon,FRI,wed\",\"from\":\"08:30\",\"to\":\"08:31\"}]",
       "[{\"days\":[\"mon\",\"wed\",\"fri\"],\"from\":\"08:30\",\"to\":\"08:31\"}]");
    ok("[{\"to\":\"21:00\",\"from\":\"09:00\",\"days\":[\"sun\",\"sat\"]}]",
       "[{\"days\":[\"sat\",\"sun\"],\"from\":\"09:00\",\"to\":\"21:00\"}]");
    ok("[{\"days\":\"mon-sun\",\"from\":\"23:59\",\"to\":\"24:00\"}]",
       "[{\"days\":[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\",\"sat\",\"sun\"],\"from\":\"23:59\",\"to\":\"24:00\"}]");

    bad("", "calling_windows");
    bad("{\"days\":\"mon\"}", "calling_windows");
    bad("null", "calling_windows");
    bad("[]", "calling_windows");
    bad("[1]", "calling_windows[0]");
    bad("[{\"days\":\"mon\",\"from\":\"09:00\",\"to\":\"10:00\",\"tz\":\"UTC\"}]", "calling_windows[0]");
    bad("[{\"days\":\"mon\",\"from\":\"09:00\",\"to\":\"10:00\",\"days\":\"tue\"}]", "calling_windows");
    bad("[{\"from\":\"09:00\",\"to\":\"10:00\"}]", "calling_windows[0].days");
    bad("[{\"days\":\"\",\"from\":\"09:00\",\"to\":\"10:00\"}]", "calling_windows[0].days");
    bad("[{\"days\":\"monday\",\"from\":\"09:00\",\"to\":\"10:00\"}]", "calling_windows[0].days");
    bad("[{\"days\":\"mon-\",\"from\":\"09:00\",\"to\":\"10:00\"}]", "calling_windows[0].days");
    bad("[{\"days\":\"mon,,tue\",\"from\":\"09:00\",\"to\":\"10:00\"}]", "calling_windows[0].days");
    bad("[{\"days\":[],\"from\":\"09:00\",\"to\":\"10:00\"}]", "calling_windows[0].days");
    bad("[{\"days\":[\"mon\",7],\"from\":\"09:00\",\"to\":\"10:00\"}]", "calling_windows[0].days");
    bad("[{\"days\":\"mon\\u0000\",\"from\":\"09:00\",\"to\":\"10:00\"}]", "calling_windows"); /* jansson refuses NUL */
    bad("[{\"days\":\"mon\",\"to\":\"10:00\"}]", "calling_windows[0].from");
    bad("[{\"days\":\"mon\",\"from\":\"9:00\",\"to\":\"10:00\"}]", "calling_windows[0].from");
    bad("[{\"days\":\"mon\",\"from\":\"24:00\",\"to\":\"24:00\"}]", "calling_windows[0].from");
    bad("[{\"days\":\"mon\",\"from\":\"09:60\",\"to\":\"10:00\"}]", "calling_windows[0].from");
    bad("[{\"days\":\"mon\",\"from\":900,\"to\":\"10:00\"}]", "calling_windows[0].from");
    bad("[{\"days\":\"mon\",\"from\":\"09:00\",\"to\":\"24:01\"}]", "calling_windows[0].to");
    bad("[{\"days\":\"mon\",\"from\":\"09:00\",\"to\":\"09:00\"}]", "calling_windows[0].to");
    bad("[{\"days\":\"mon\",\"from\":\"22:00\",\"to\":\"02:00\"}]", "calling_windows[0].to");
    bad("[{\"days\":\"mon\",\"from\":\"09:00\",\"to\":\"10:00\"},{\"days\":\"tue\",\"from\":\"x\",\"to\":\"1\"}]",
        "calling_windows[1].from");

    /* at most OD_WINDOW_MAX windows */
    char big[64 * (OD_WINDOW_MAX + 2)] = "[";
    for (int i = 0; i <= OD_WINDOW_MAX; i++)
        strcat(big, i ? ",{\"days\":\"mon\",\"from\":\"09:00\",\"to\":\"10:00\"}"
                      : "{\"days\":\"mon\",\"from\":\"09:00\",\"to\":\"10:00\"}");
    strcat(big, "]");
    bad(big, "calling_windows");
    return od_test_result("test_window");
}
