/*
 * libFuzzer target for od_rfc3339_parse and od_rfc3339_format.
 * Properties checked beyond "no crash, no sanitizer report":
 *  - round trip: for an accepted input x, format(parse(x)) is 24 bytes and
 *    parses back to parse(x) truncated to the millisecond (format prints
 *    milliseconds), and formatting that again gives the same string;
 *  - the first 8 input bytes as an int64: format either refuses it (out of
 *    years 0001–9999) or gives a string that parses back to it, truncated
 *    to the millisecond toward the past.
 */
#include "od/rfc3339.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int64_t floor_ms(int64_t us)
{
    int64_t r = us % 1000;
    return us - (r < 0 ? r + 1000 : r);
}

/* format(v) must parse back to floor_ms(v) and format to the same string. */
static void check_format(int64_t v)
{
    char buf[OD_RFC3339_BUF_SIZE], buf2[OD_RFC3339_BUF_SIZE];
    size_t n = od_rfc3339_format(v, buf);
    if (n == 0) {
        if (buf[0] != '\0')
            abort();
        return;
    }
    int64_t back;
    if (n != 24 || strlen(buf) != n || od_rfc3339_parse(buf, n, &back, NULL) != 0 || back != floor_ms(v))
        abort();
    if (od_rfc3339_format(back, buf2) != n || memcmp(buf, buf2, n + 1) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int64_t v = 0;
    const char *err = NULL;
    if (od_rfc3339_parse((const char *)data, size, &v, &err) == 0) {
        char buf[OD_RFC3339_BUF_SIZE];
        if (od_rfc3339_format(v, buf) == 0) /* every parsed value must format */
            abort();
        check_format(v);
    } else if (err == NULL || strcmp(err, "invalid_datetime") != 0) {
        abort();
    }

    if (size >= 8) {
        int64_t raw;
        memcpy(&raw, data, 8);
        check_format(raw);
        /* also near the valid range, where raw values rarely land */
        check_format(raw % INT64_C(253402300800000000));
    }
    return 0;
}
