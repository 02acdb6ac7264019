/*
 * RFC 3339 timestamps, the only time format of the public API (DESIGN §2):
 * parsing what clients send (`scheduled_for`, `since`, `start_at`) and
 * formatting what we return. Times are int64 microseconds since the Unix
 * epoch, UTC. Pure arithmetic: no locale, no TZ, no timegm().
 * Fuzz target: fuzz/fuzz_rfc3339.c.
 */
#ifndef OD_RFC3339_H
#define OD_RFC3339_H

#include <stddef.h>
#include <stdint.h>

/** Buffer size for od_rfc3339_format (24 characters and a NUL, rounded up). */
#define OD_RFC3339_BUF_SIZE 32

/**
 * Parses `len` bytes at `s` (need not be NUL-terminated; a NUL inside the
 * length is rejected) as an RFC 3339 `date-time`, and nothing else:
 *
 *     YYYY-MM-DD ("T" | "t") HH:MM:SS [ "." 1*9DIGIT ] ("Z" | "z" | ("+" | "-") HH:MM)
 *
 * - year 0001–9999 (PostgreSQL has no year 0), real month lengths (Feb 29 in Gregorian leap years only),
 *   hour ≤ 23, minute ≤ 59, offset hours ≤ 23 and minutes ≤ 59; "-00:00"
 *   means UTC. A space separator, missing seconds, ",", and more than 9
 *   fraction digits are rejected.
 * - the fraction is truncated to microseconds (".1234567" → 123456 µs).
 * - leap second: second 60 is accepted only where it can exist, at 23:59:60
 *   UTC (after applying the offset; any day — no leap-second table), and is
 *   clamped to 23:59:59.999999 UTC so it sorts after every other instant of
 *   that day and before the next day.
 * - the resulting UTC instant must itself fall in years 0001–9999, so every
 *   parsed value can be formatted and stored ("0001-01-01T00:00:00+01:00" is
 *   rejected).
 *
 * On success returns 0 and stores the instant in `*out_us`. On failure
 * returns -1, leaves `*out_us` alone and, if `errcode` is not NULL, sets it
 * to the static string "invalid_datetime".
 */
int od_rfc3339_parse(const char *s, size_t len, int64_t *out_us, const char **errcode);

/**
 * Formats `us` as "YYYY-MM-DDTHH:MM:SS.mmmZ": always UTC, always exactly
 * three fraction digits (truncated toward the past), always 24 characters —
 * fixed width so that string order equals time order in API output, CSV
 * exports and cursors. Writes a NUL-terminated string to `buf` and returns
 * its length (24), or returns 0 with `buf` empty if `us` is outside years
 * 0001–9999 UTC (never the case for a value from od_rfc3339_parse).
 */
size_t od_rfc3339_format(int64_t us, char buf[OD_RFC3339_BUF_SIZE]);

#endif
