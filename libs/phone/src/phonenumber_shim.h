/*
 * Private C face of the C++ shim over libphonenumber (phonenumber_shim.cc).
 * Nothing outside libs/phone includes this; the public API is od/phone.h.
 * The shim never lets a C++ exception out: std::bad_alloc aborts (our
 * out-of-memory policy), anything else becomes OD_PHONE__LPN_ERROR.
 * Thread-safe: PhoneNumberUtil is an immutable singleton after first use.
 */
#ifndef OD_PHONE_PHONENUMBER_SHIM_H
#define OD_PHONE_PHONENUMBER_SHIM_H

#include "od/phone.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    OD_PHONE__LPN_POSSIBLE = 0,      /**< possible number; output written */
    OD_PHONE__LPN_NOT_POSSIBLE = 1,  /**< parsed, but wrong length for its country */
    OD_PHONE__LPN_BAD_COUNTRY = 2,   /**< no such country calling code */
    OD_PHONE__LPN_UNPARSEABLE = 3,   /**< libphonenumber could not parse it at all */
    OD_PHONE__LPN_ERROR = -1,        /**< unexpected exception inside the shim */
};

/**
 * Checks `plus_digits` (NUL-terminated, already "+" and 8..15 digits) with
 * PhoneNumberUtil::Parse(…, "ZZ") and IsPossibleNumberWithReason. On
 * OD_PHONE__LPN_POSSIBLE writes libphonenumber's E.164 formatting of the
 * number (NUL-terminated, at most 15 digits) to `out`.
 */
int od_phone__lpn_check(const char *plus_digits, char out[OD_PHONE_E164_SIZE]);

/**
 * Writes the ISO 3166 region of `plus_digits` (GetRegionCodeForNumber) to
 * `region`: two letters, or "ZZ" when unknown or not geographic (e.g. +800).
 * Returns 0, or OD_PHONE__LPN_UNPARSEABLE / OD_PHONE__LPN_ERROR (region "ZZ").
 */
int od_phone__lpn_region(const char *plus_digits, char region[3]);

/** How od_phone_time_zones looks a number up (the rule of libphonenumber's Java mapper). */
enum {
    OD_PHONE__TZ_BY_AREA = 0,    /**< fixed line, mobile or unclassified: longest prefix of its digits */
    OD_PHONE__TZ_BY_COUNTRY = 1, /**< toll-free, premium rate, VoIP, pager...: its country calling code only */
};

/**
 * Parses `plus_digits` and tells how its time zones are looked up
 * (OD_PHONE__TZ_BY_*, from GetNumberType as Java's canBeGeocoded decides),
 * and writes the number of digits of its country calling code to `*cc_len`.
 * Returns OD_PHONE__LPN_UNPARSEABLE or OD_PHONE__LPN_ERROR when it cannot.
 */
int od_phone__lpn_tz_scope(const char *plus_digits, int *cc_len);

#ifdef __cplusplus
}
#endif

#endif
