/* libFuzzer target: the POST /v1/calls body validation (JSON, E.164, RFC 3339, metadata). */
#include <stddef.h>
#include <stdint.h>

#include "call_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    od_call_request_t req;
    od_buf_t errors = OD_BUF_INIT;
    const char *code;
    if (od_call_request_parse((const char *)data, size, 1795464000000000LL, &req, &code, &errors) == 0)
        od_call_request_free(&req);
    od_buf_free(&errors);
    return 0;
}
