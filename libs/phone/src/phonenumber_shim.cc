/*
 * The only C++ in libs/phone: a thin shim over libphonenumber's
 * PhoneNumberUtil exposing plain C functions (phonenumber_shim.h).
 * Every entry point catches every exception, since unwinding into C frames
 * is undefined behaviour.
 */
#include "phonenumber_shim.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include <phonenumbers/phonenumber.pb.h>
#include <phonenumbers/phonenumberutil.h>

using i18n::phonenumbers::PhoneNumber;
using i18n::phonenumbers::PhoneNumberUtil;

/* Parses a "+digits" string; region "ZZ" means the input must carry its own
 * country calling code, which ours always does. */
static int parse_plus(const PhoneNumberUtil *util, const char *plus_digits, PhoneNumber *num)
{
    PhoneNumberUtil::ErrorType err = util->Parse(std::string(plus_digits), "ZZ", num);
    if (err == PhoneNumberUtil::NO_PARSING_ERROR)
        return OD_PHONE__LPN_POSSIBLE;
    if (err == PhoneNumberUtil::INVALID_COUNTRY_CODE_ERROR)
        return OD_PHONE__LPN_BAD_COUNTRY;
    if (err == PhoneNumberUtil::TOO_SHORT_NSN || err == PhoneNumberUtil::TOO_SHORT_AFTER_IDD ||
        err == PhoneNumberUtil::TOO_LONG_NSN)
        return OD_PHONE__LPN_NOT_POSSIBLE;
    return OD_PHONE__LPN_UNPARSEABLE;
}

extern "C" int od_phone__lpn_check(const char *plus_digits, char out[OD_PHONE_E164_SIZE])
{
    try {
        const PhoneNumberUtil *util = PhoneNumberUtil::GetInstance();
        PhoneNumber num;
        int rc = parse_plus(util, plus_digits, &num);
        if (rc != OD_PHONE__LPN_POSSIBLE)
            return rc;
        switch (util->IsPossibleNumberWithReason(num)) {
        case PhoneNumberUtil::IS_POSSIBLE:
            break;
        case PhoneNumberUtil::INVALID_COUNTRY_CODE:
            return OD_PHONE__LPN_BAD_COUNTRY;
        default:
            /* IS_POSSIBLE_LOCAL_ONLY included: a number only dialable inside
             * its area is not a complete international number. */
            return OD_PHONE__LPN_NOT_POSSIBLE;
        }
        std::string e164;
        util->Format(num, PhoneNumberUtil::E164, &e164);
        /* Format may differ from the input (a national prefix after the
         * country code is dropped), but it must still be "+" and ≤ 15 digits. */
        if (e164.size() < 2 || e164.size() + 1 > OD_PHONE_E164_SIZE || e164[0] != '+' ||
            e164.find_first_not_of("0123456789", 1) != std::string::npos)
            return OD_PHONE__LPN_UNPARSEABLE;
        std::memcpy(out, e164.c_str(), e164.size() + 1);
        return OD_PHONE__LPN_POSSIBLE;
    } catch (const std::bad_alloc &) {
        std::abort(); /* out of memory aborts everywhere in outdial */
    } catch (...) {
        return OD_PHONE__LPN_ERROR;
    }
}

extern "C" int od_phone__lpn_region(const char *plus_digits, char region[3])
{
    std::memcpy(region, "ZZ", 3);
    try {
        const PhoneNumberUtil *util = PhoneNumberUtil::GetInstance();
        PhoneNumber num;
        int rc = parse_plus(util, plus_digits, &num);
        if (rc != OD_PHONE__LPN_POSSIBLE)
            return OD_PHONE__LPN_UNPARSEABLE;
        std::string code;
        util->GetRegionCodeForNumber(num, &code);
        /* "001" is libphonenumber's pseudo-region for non-geographic codes. */
        if (code.size() == 2 && code[0] >= 'A' && code[0] <= 'Z' && code[1] >= 'A' && code[1] <= 'Z')
            std::memcpy(region, code.c_str(), 3);
        return 0;
    } catch (const std::bad_alloc &) {
        std::abort();
    } catch (...) {
        return OD_PHONE__LPN_ERROR;
    }
}

extern "C" int od_phone__lpn_tz_scope(const char *plus_digits, int *cc_len)
{
    try {
        const PhoneNumberUtil *util = PhoneNumberUtil::GetInstance();
        PhoneNumber num;
        if (parse_plus(util, plus_digits, &num) != OD_PHONE__LPN_POSSIBLE)
            return OD_PHONE__LPN_UNPARSEABLE;
        int cc = num.country_code(), n = 0;
        do {
            n++;
            cc /= 10;
        } while (cc > 0);
        *cc_len = n;
        switch (util->GetNumberType(num)) {
        case PhoneNumberUtil::FIXED_LINE:
        case PhoneNumberUtil::MOBILE:
        case PhoneNumberUtil::FIXED_LINE_OR_MOBILE:
        case PhoneNumberUtil::UNKNOWN: /* possible but not valid: its prefix is still the best guess */
            return OD_PHONE__TZ_BY_AREA;
        default:
            return OD_PHONE__TZ_BY_COUNTRY;
        }
    } catch (const std::bad_alloc &) {
        std::abort();
    } catch (...) {
        return OD_PHONE__LPN_ERROR;
    }
}
