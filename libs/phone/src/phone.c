#include "od/phone.h"

#include <assert.h>
#include <string.h>

#include "phonenumber_shim.h"
#include "tz_table.h"

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

/* the entry whose prefix is exactly the first `len` digits of `digits`, or NULL */
static const od_phone__tz_entry_t *tz_find(const char *digits, size_t len)
{
    size_t lo = 0, hi = od_phone__tz_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *p = od_phone__tz_table[mid].prefix;
        int c = strncmp(p, digits, len);
        if (c == 0 && p[len] != '\0')
            c = 1; /* p is longer: it sorts after the prefix */
        if (c == 0)
            return &od_phone__tz_table[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int od_phone_time_zones(const char *e164, const char **zones)
{
    *zones = "";
    size_t len = strnlen(e164, OD_PHONE_E164_SIZE);
    if (!is_e164_syntax(e164, len))
        return -1;
    int cc_len = 0;
    int scope = od_phone__lpn_tz_scope(e164, &cc_len);
    if (scope != OD_PHONE__TZ_BY_AREA && scope != OD_PHONE__TZ_BY_COUNTRY)
        return -1;
    size_t n = len - 1;
    if (scope == OD_PHONE__TZ_BY_COUNTRY)
        n = (size_t)cc_len;
    else if (n > od_phone__tz_longest)
        n = od_phone__tz_longest;
    for (; n > 0; n--) {
        const od_phone__tz_entry_t *e = tz_find(e164 + 1, n);
        if (e == NULL)
            continue;
        int count = 1;
        for (const char *p = e->zones; *p != '\0'; p++)
            count += *p == ',';
        *zones = e->zones;
        return count;
    }
    return 0;
}

const char *od_phone_tz_data_version(void)
{
    return od_phone__tz_version;
}
