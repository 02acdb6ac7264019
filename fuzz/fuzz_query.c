/*
 * libFuzzer target for od_http_query (libs/http): the input is a request's
 * query string (after the `?`), on a request built by hand; every parameter
 * name a route reads is looked up, and the input's first name too.
 * Properties checked beyond "no crash, no sanitizer report":
 *  - a value found is a string without NUL no longer than the raw query,
 *    which jansson takes (json_string is not NULL: valid UTF-8), which is
 *    what every handler does with it;
 *  - a refusal (*bad) comes with NULL;
 *  - round trip: the value percent-encoded again, alone in a query, is read
 *    back the same.
 */
#include "od/http.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
    "limit",    "cursor",   "status",          "final_state", "batch_id",           "phone",
    "since",    "until",    "from",            "to",          "action",             "scenario",
    "start_at", "caller_id", "calling_windows", "retry_on",    "retry_max_attempts", "retry_delay_s",
    "file_name", "pacing_per_min", "spend_cap_micros",
};

static char *lookup(h2o_req_t *req, const char *path, size_t len, const char *name, int *bad)
{
    req->path = h2o_iovec_init(path, len);
    req->query_at = 0; /* path is "?" + the query */
    *bad = 0;
    return od_http_query(req, name, bad);
}

static void check(h2o_req_t *req, const char *path, size_t len, const char *name)
{
    int bad;
    char *v = lookup(req, path, len, name, &bad);
    if (bad && v != NULL)
        abort();
    if (v == NULL)
        return;
    size_t vl = strlen(v);
    if (vl > len)
        abort();
    json_t *j = json_string(v);
    if (j == NULL)
        abort();
    json_decref(j);
    /* round trip */
    size_t nl = strlen(name);
    char *q = malloc(1 + nl + 1 + 3 * vl + 1), *o = q;
    *o++ = '?';
    memcpy(o, name, nl);
    o += nl;
    *o++ = '=';
    for (size_t i = 0; i < vl; i++)
        o += sprintf(o, "%%%02X", (unsigned char)v[i]);
    char *again = lookup(req, q, (size_t)(o - q), name, &bad);
    if (again == NULL || bad || strcmp(again, v) != 0)
        abort();
    free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    h2o_req_t req;
    memset(&req, 0, sizeof(req));
    h2o_mem_init_pool(&req.pool);
    char *path = malloc(size + 1);
    path[0] = '?';
    memcpy(path + 1, data, size);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        check(&req, path, size + 1, names[i]);
    /* the first name in the input, if it can be one (no NUL) */
    size_t nl = 0;
    while (nl < size && data[nl] != '=' && data[nl] != '&' && data[nl] != '\0')
        nl++;
    if (nl == size || data[nl] != '\0') {
        char *name = strndup((const char *)data, nl);
        check(&req, path, size + 1, name);
        free(name);
    }
    free(path);
    h2o_mem_clear_pool(&req.pool);
    return 0;
}
