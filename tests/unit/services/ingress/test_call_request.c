/* POST /v1/calls body validation, with an injected clock. */
#include "call_request.h"

#include <stdlib.h>

#include "od/utf8.h"
#include "od_test.h"

#define NOW_US 1795464000000000LL /* 2026-11-23T20:00:00Z */

static int parse(const char *body, const char **code, od_call_request_t *req)
{
    od_buf_t errors = OD_BUF_INIT;
    int st = od_call_request_parse(body, strlen(body), NOW_US, req, code, &errors);
    od_buf_free(&errors);
    return st;
}

static void test_valid(void)
{
    od_call_request_t req;
    const char *code = NULL;
    CHECK(parse("{\"scenario\":\"appointment_reminder\",\"phone\":\"+34123456780\","
                "\"metadata\":{\"patient\":\"Ana\",\"n\":3},\"scheduled_for\":\"2026-11-24T09:30:00+01:00\","
                "\"caller_id\":\"+15005550006\"}",
                &code, &req) == 0);
    CHECK_STR(req.scenario, "appointment_reminder");
    CHECK_STR(req.phone, "+34123456780");
    CHECK_STR(req.caller_id, "+15005550006");
    CHECK_STR(req.metadata, "{\"patient\":\"Ana\",\"n\":3}");
    CHECK(req.scheduled_us == 1795509000000000LL);
    od_call_request_free(&req);

    CHECK(parse("{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"metadata\":null,\"scheduled_for\":null}", &code,
                &req) == 0);
    CHECK_STR(req.metadata, "{}");
    CHECK(req.scheduled_us == 0 && req.caller_id[0] == '\0');
    od_call_request_free(&req);

    /* 59 s in the past is still accepted (clock skew); 30 days ahead exactly too */
    CHECK(parse("{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"scheduled_for\":\"2026-11-23T19:59:01Z\"}", &code,
                &req) == 0);
    od_call_request_free(&req);
    CHECK(parse("{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"scheduled_for\":\"2026-12-23T20:00:00Z\"}", &code,
                &req) == 0);
    od_call_request_free(&req);
}

static void test_invalid(void)
{
    static const struct {
        const char *body;
        int status;
        const char *code;
    } cases[] = {
        {"", 400, "invalid_json"},
        {"{", 400, "invalid_json"},
        {"[1,2]", 400, "invalid_json"},
        {"\"x\"", 400, "invalid_json"},
        {"{\"scenario\":\"s\",\"scenario\":\"t\",\"phone\":\"+34123456780\"}", 400, "invalid_json"},
        {"{\"scenario\":\"s\",\"phone\":\"+34\\u0000123456780\"}", 400, "invalid_json"},
        {"{\"phone\":\"+34123456780\"}", 422, "missing_field"},
        {"{\"scenario\":\"s\"}", 422, "missing_field"},
        {"{\"scenario\":5,\"phone\":\"+34123456780\"}", 422, "invalid_type"},
        {"{\"scenario\":\"s\",\"phone\":34123456780}", 422, "invalid_type"},
        {"{\"scenario\":\"Bad Name!\",\"phone\":\"+34123456780\"}", 422, "unknown_scenario"},
        {"{\"scenario\":\"s\",\"phone\":\"34123456780\"}", 422, "invalid_phone"},
        {"{\"scenario\":\"s\",\"phone\":\"+1234\"}", 422, "invalid_phone"},
        {"{\"scenario\":\"s\",\"phone\":\"+999123456789\"}", 422, "phone_not_possible"},
        {"{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"metadata\":[1]}", 422, "invalid_type"},
        {"{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"metadata\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":{\"f\":{\"g\":"
         "{\"h\":1}}}}}}}}}",
         422, "metadata_too_deep"},
        {"{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"scheduled_for\":\"tomorrow\"}", 422, "invalid_datetime"},
        {"{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"scheduled_for\":\"2026-11-23T19:58:59Z\"}", 422,
         "scheduled_for_in_past"},
        {"{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"scheduled_for\":\"2026-12-23T20:00:01Z\"}", 422,
         "scheduled_for_too_far"},
        {"{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"scheduled_for\":1}", 422, "invalid_type"},
        {"{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"caller_id\":\"nope\"}", 422, "caller_id_not_verified"},
        {"{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"schedule_for\":\"x\"}", 422, "unknown_field"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        od_call_request_t req;
        const char *code = NULL;
        int st = parse(cases[i].body, &code, &req);
        CHECK(st == cases[i].status);
        CHECK_STR(code, cases[i].code);
        if (st != cases[i].status || code == NULL || strcmp(code, cases[i].code) != 0)
            fprintf(stderr, "  case %zu: %s\n", i, cases[i].body);
        CHECK(req.metadata == NULL);
    }

    /* raw NUL inside the body */
    od_call_request_t req;
    const char *code;
    od_buf_t errors = OD_BUF_INIT;
    static const char nul[] = "{\"scenario\":\"s\",\"phone\":\"+34123456780\"}\0{}";
    CHECK(od_call_request_parse(nul, sizeof(nul) - 1, NOW_US, &req, &code, &errors) == 400);
    od_buf_free(&errors);

    /* metadata over 16 KiB */
    size_t big = OD_METADATA_MAX + 100;
    char *body = malloc(big + 100);
    int n = sprintf(body, "{\"scenario\":\"s\",\"phone\":\"+34123456780\",\"metadata\":{\"k\":\"");
    memset(body + n, 'x', big);
    strcpy(body + n + big, "\"}}");
    CHECK(parse(body, &code, &req) == 422);
    CHECK_STR(code, "metadata_too_large");
    free(body);

    /* several errors are all reported, the first one names the problem */
    errors = (od_buf_t)OD_BUF_INIT;
    const char *two = "{\"scenario\":1,\"phone\":\"x\"}";
    CHECK(od_call_request_parse(two, strlen(two), NOW_US, &req, &code, &errors) == 422);
    CHECK(errors.base != NULL && strstr(errors.base, "\"field\":\"scenario\"") && strstr(errors.base, "\"field\":\"phone\""));
    od_buf_free(&errors);
}

/* found by fuzz_window, then fuzz_call_request: jansson's error text quotes the input cut in the middle of a UTF-8
 * sequence ("invalid escape near '"a\xc3'"), and the problem's errors were not valid UTF-8 */
static void test_json_error_cut_utf8(void)
{
    const char *body = "{\"a\xc3\xa9\\\xc3\xa9\"}";
    od_call_request_t req;
    od_buf_t errors = OD_BUF_INIT;
    const char *code;
    CHECK(od_call_request_parse(body, strlen(body), 1795464000000000LL, &req, &code, &errors) == 400);
    CHECK_STR(code, "invalid_json");
    CHECK(od_utf8_check(errors.base, errors.len) == 0);
    CHECK(strstr(errors.base, "invalid escape") != NULL);
    od_buf_free(&errors);
}

int main(void)
{
    test_json_error_cut_utf8();
    test_valid();
    test_invalid();
    return od_test_result("test_call_request");
}
