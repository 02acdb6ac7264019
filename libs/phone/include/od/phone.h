/*
 * Phone numbers as the public API takes them: strict E.164 ("+" and digits,
 * nothing else) that libphonenumber says is a *possible* number — right
 * length for its country, not necessarily an assigned range (DESIGN §2);
 * and the time zones of a number (quiet hours, docs/quiet-hours.md).
 * Every parser of outside input has a fuzz target: fuzz/fuzz_phone.c.
 *
 * Thread-safe. The libphonenumber metadata loads on first use (a few ms).
 */
#ifndef OD_PHONE_H
#define OD_PHONE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Fewest digits after "+" we accept (ITU allows fewer; no real number is). */
#define OD_PHONE_MIN_DIGITS 8
/** Most digits after "+" (ITU-T E.164: at most 15 including the country code). */
#define OD_PHONE_MAX_DIGITS 15
/** Buffer size for a normalised number: "+", 15 digits, NUL = 17 (not 16). */
#define OD_PHONE_E164_SIZE (1 + OD_PHONE_MAX_DIGITS + 1)

/**
 * Parses `len` bytes at `s` (need not be NUL-terminated; a NUL inside the
 * length is rejected) as a strict E.164 number:
 * "+" then OD_PHONE_MIN_DIGITS..OD_PHONE_MAX_DIGITS ASCII digits, the first
 * non-zero; no spaces, punctuation or anything else.
 *
 * On success returns 0 and writes the normalised NUL-terminated "+digits" to
 * `out`. Normalised means libphonenumber's E.164 formatting, which equals the
 * input except that a national prefix written after the country code is
 * dropped ("+4407911123456" → "+447911123456"). The output is always
 * accepted by this function again and normalises to itself; a number whose
 * normalised form would not be (e.g. "+43036586" → 7 digits) is rejected as
 * "phone_not_possible".
 *
 * On failure returns -1, leaves `out` an empty string and, if `errcode` is
 * not NULL, points it at a static, stable code:
 *  - "invalid_phone": not the syntax above;
 *  - "phone_not_possible": unknown country calling code, or a length that
 *    libphonenumber's IsPossibleNumberWithReason rejects for that country.
 *    Numbers it calls IS_POSSIBLE_LOCAL_ONLY (subscriber number without area
 *    code) are rejected too: they cannot be dialled internationally.
 */
int od_phone_parse_e164(const char *s, size_t len, char out[OD_PHONE_E164_SIZE], const char **errcode);

/**
 * Writes the ISO 3166-1 alpha-2 region of the E.164 number `e164`
 * (NUL-terminated, as produced by od_phone_parse_e164) to `region`, e.g.
 * "ES". Writes "ZZ" when the region is unknown: non-geographic codes
 * (+800, +882…), or a number under a shared code (+1, +7, +44…) that matches
 * none of its regions. Returns 0, or -1 (region "ZZ") if `e164` does not
 * have the syntax od_phone_parse_e164 accepts or libphonenumber cannot parse
 * it. Does not check possibility: parse first.
 */
int od_phone_region(const char *e164, char region[3]);

/**
 * The time zones of the E.164 number `e164` (NUL-terminated, as produced by
 * od_phone_parse_e164), from libphonenumber's time-zone map: the data of its
 * Java PhoneNumberToTimeZonesMapper, same release as the C++ library, which
 * has no mapper (the table is generated at build time from Debian's
 * python3-phonenumbers: libs/phone/gen_tz_table.c). The mapper's rule:
 *  - a fixed-line or mobile number: the zones of the longest prefix of its
 *    digits in the map (country calling code + area): "+12125550100" gives
 *    "America/New_York", "+61891234560" "Australia/Adelaide,Australia/Perth"
 *    (the area code 8 spans both);
 *  - a number of another type (toll-free, premium rate, VoIP, pager...): the
 *    zones of its country calling code alone;
 *  - a number libphonenumber cannot classify (possible but not valid, e.g.
 *    "+34123456789"): its longest prefix as well (the mapper says unknown).
 * Sets `*zones` to a static string of IANA zone names joined by "," in
 * sorted order, or "" when the map has none (e.g. +800). Returns the number
 * of zones (0 = unknown), or -1 (zones "") if `e164` does not have the syntax
 * od_phone_parse_e164 accepts or libphonenumber cannot parse it.
 * Thread-safe; allocates nothing.
 */
int od_phone_time_zones(const char *e164, const char **zones);

/** The Debian version of the time-zone data (python3-phonenumbers), e.g. "8.12.57-4". */
const char *od_phone_tz_data_version(void);

#ifdef __cplusplus
}
#endif

#endif
