/*
 * libFuzzer target: the POST /v1/calls body validation (JSON, E.164,
 * RFC 3339, metadata; services/ingress/call_request.c).
 * Properties checked beyond "no crash, no sanitizer report, no NULL from
 * jansson passed on" (json_strict.c):
 *  - a refusal is a 400 or 422 with a code, and its errors are a JSON
 *    array (valid UTF-8: they go into the problem's JSON) of at least one
 *    {field, code, message}, the first with the problem's code;
 *  - an accepted body gives an E.164 phone, a scenario idn and metadata
 *    that is a JSON object.
 */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "call_request.h"

#define CHECK(c) ((c) ? (void)0 : abort())

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    od_call_request_t req;
    od_buf_t errors = OD_BUF_INIT;
    const char *code = NULL;
    int rc = od_call_request_parse((const char *)data, size, 1795464000000000LL, &req, &code, &errors);
    if (rc == 0) {
        CHECK(req.phone[0] == '+' && od_scenario_idn_ok(req.scenario, strlen(req.scenario)));
        json_t *meta = json_loads(req.metadata, 0, NULL);
        CHECK(json_is_object(meta));
        json_decref(meta);
        od_call_request_free(&req);
    } else {
        CHECK((rc == 400 || rc == 422) && code != NULL);
        json_error_t jerr;
        json_t *list = json_loadb(errors.base, errors.len, 0, &jerr);
        CHECK(json_is_array(list) && json_array_size(list) > 0);
        json_t *first = json_array_get(list, 0);
        CHECK(json_is_string(json_object_get(first, "field")) && json_is_string(json_object_get(first, "message")));
        CHECK(strcmp(json_string_value(json_object_get(first, "code")), code) == 0);
        json_decref(list);
    }
    od_buf_free(&errors);
    return 0;
}
