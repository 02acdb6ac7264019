/*
 * libFuzzer target for od_phone_parse_e164, od_phone_region and
 * od_phone_time_zones.
 * Properties checked beyond "no crash, no sanitizer report":
 *  - an accepted number comes out as "+" and 8..15 digits, NUL-terminated;
 *  - parsing is idempotent: the output parses again to itself;
 *  - a rejected number leaves an empty output and a known error code;
 *  - the region of an accepted number is "ZZ" or two capital letters;
 *  - its time zones are found (0 or more, never an error), and their count
 *    matches the list.
 */
#include "od/phone.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[OD_PHONE_E164_SIZE];
    const char *err = NULL;
    if (od_phone_parse_e164((const char *)data, size, out, &err) != 0) {
        if (out[0] != '\0' || (strcmp(err, "invalid_phone") != 0 && strcmp(err, "phone_not_possible") != 0))
            abort();
        return 0;
    }
    size_t n = strlen(out);
    if (n < 1 + OD_PHONE_MIN_DIGITS || n > 1 + OD_PHONE_MAX_DIGITS || out[0] != '+')
        abort();
    for (size_t i = 1; i < n; i++)
        if (out[i] < '0' || out[i] > '9')
            abort();

    char again[OD_PHONE_E164_SIZE];
    if (od_phone_parse_e164(out, n, again, &err) != 0 || strcmp(out, again) != 0)
        abort();

    char region[3];
    if (od_phone_region(out, region) != 0 || region[2] != '\0' || region[0] < 'A' || region[0] > 'Z' ||
        region[1] < 'A' || region[1] > 'Z')
        abort();

    const char *zones;
    int nz = od_phone_time_zones(out, &zones);
    if (nz < 0 || (nz == 0) != (zones[0] == '\0'))
        abort();
    return 0;
}
