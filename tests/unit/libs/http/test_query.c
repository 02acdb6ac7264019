/* Unit tests for od_http_query (od/http.h): percent-decoding of query
 * parameters on a request built by hand, and the values it refuses. */
#include "od/http.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "od_test.h"

/* The value of `name` in `query`, "(absent)", or "(bad)" */
static const char *query(const char *q, const char *name)
{
    static char res[256];
    char path[512];
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    int n = snprintf(path, sizeof(path), "/v1/x?%s", q);
    req.path = h2o_iovec_init(path, (size_t)n);
    req.query_at = 5;
    int bad = 0;
    char *v = od_http_query(&req, name, &bad);
    snprintf(res, sizeof(res), "%s", bad ? "(bad)" : v ? v : "(absent)");
    if (v != NULL) { /* what the handlers do with a value */
        json_t *j = json_string(v);
        CHECK(j != NULL);
        json_decref(j);
    }
    h2o_mem_clear_pool(&req.pool);
    return res;
}

static void test_decoding(void)
{
    CHECK_STR(query("a=1&scenario=x+y%2Bz&b", "scenario"), "x y+z");
    CHECK_STR(query("scenario=", "scenario"), "");
    CHECK_STR(query("scenario", "scenario"), "");
    CHECK_STR(query("a=1", "scenario"), "(absent)");
    CHECK_STR(query("scenario=%C3%A9t%C3%A9", "scenario"), "\xC3\xA9t\xC3\xA9");
    CHECK_STR(query("s=%F0%9F%93%9E", "s"), "\xF0\x9F\x93\x9E");
    CHECK_STR(query("s=%4", "s"), "(bad)");
    CHECK_STR(query("s=%zz", "s"), "(bad)");
    CHECK_STR(query("s=%00", "s"), "(bad)");
}

/* issue 18: POST /v1/batches?scenario=%FF made json_pack answer NULL and the ingress crash */
static void test_batches_scenario_ff_not_utf8(void)
{
    CHECK_STR(query("scenario=%FF", "scenario"), "(bad)");
    CHECK_STR(query("file_name=a%C3", "file_name"), "(bad)");       /* truncated sequence */
    CHECK_STR(query("s=%C0%AF", "s"), "(bad)");                     /* overlong '/' */
    CHECK_STR(query("s=%ED%A0%80", "s"), "(bad)");                  /* a surrogate */
    CHECK_STR(query("s=%F4%90%80%80", "s"), "(bad)");               /* above U+10FFFF */
    CHECK_STR(query("s=%E0%80%80", "s"), "(bad)");                  /* overlong 3 bytes */
    CHECK_STR(query("s=%80", "s"), "(bad)");                        /* a lone continuation */
    CHECK_STR(query("s=\xFF", "s"), "(bad)");                       /* raw, not escaped */
    CHECK_STR(query("s=%EF%BF%BF", "s"), "\xEF\xBF\xBF");           /* U+FFFF is valid */
    CHECK_STR(query("s=%F4%8F%BF%BF", "s"), "\xF4\x8F\xBF\xBF");    /* U+10FFFF too */
}

int main(void)
{
    test_decoding();
    test_batches_scenario_ff_not_utf8();
    return od_test_result("test_query");
}
