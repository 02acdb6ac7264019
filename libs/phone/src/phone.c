#include "od/phone.h"

#include <assert.h>
#include <string.h>

#include "phonenumber_shim.h"

/* The syntax is ours and is checked before libphonenumber sees anything:
 * its Parse is lenient (spaces, punctuation, letters, extensions). */
static int is_e164_syntax(const char *s, size_t len)
{
    if (len < 1 + OD_PHONE_MIN_DIGITS || len > 1 + OD_PHONE_MAX_DIGITS || s[0] != '+' || s[1] == '0')
        return 0;
    for (size_t i = 1; i < len; i++)
        if (s[i] < '0' || s[i] > '9') /* not isdigit(): no locale */
            return 0;
    return 1;
}

static int fail(char out[OD_PHONE_E164_SIZE], const char **errcode, const char *code)
{
    out[0] = '\0';
    if (errcode)
        *errcode = code;
    return -1;
}

int od_phone_parse_e164(const char *s, size_t len, char out[OD_PHONE_E164_SIZE], const char **errcode)
{
    assert(s != NULL || len == 0);
    if (!is_e164_syntax(s, len))
        return fail(out, errcode, "invalid_phone");

    char digits[OD_PHONE_E164_SIZE];
    memcpy(digits, s, len);
    digits[len] = '\0';
    switch (od_phone__lpn_check(digits, out)) {
    case OD_PHONE__LPN_POSSIBLE:
        break;
    case OD_PHONE__LPN_UNPARSEABLE:
        return fail(out, errcode, "invalid_phone");
    default: /* not possible, bad country code, or the shim caught something */
        return fail(out, errcode, "phone_not_possible");
    }
    if (strcmp(out, digits) == 0)
        return 0;

    /* libphonenumber dropped a national prefix. The result must be a fixed
     * point: accepted by this function and normalised to itself, so that
     * stored numbers compare equal however they were typed. Found by
     * fuzz_phone: "+43036586" became "+4336586", only 7 digits. */
    char again[OD_PHONE_E164_SIZE];
    if (!is_e164_syntax(out, strlen(out)) || od_phone__lpn_check(out, again) != OD_PHONE__LPN_POSSIBLE ||
        strcmp(out, again) != 0)
        return fail(out, errcode, "phone_not_possible");
    return 0;
}

int od_phone_region(const char *e164, char region[3])
{
    /* strnlen: anything longer than the longest number is already wrong */
    size_t len = strnlen(e164, OD_PHONE_E164_SIZE);
    if (!is_e164_syntax(e164, len)) {
        memcpy(region, "ZZ", 3);
        return -1;
    }
    return od_phone__lpn_region(e164, region) == 0 ? 0 : -1;
}
