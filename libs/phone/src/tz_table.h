/*
 * Private: libphonenumber's prefix -> time zones map, generated at build time
 * into the build folder (tz_table.c) by libs/phone/gen_tz_table.c from
 * Debian's python3-phonenumbers. Nothing outside libs/phone includes this;
 * the public API is od_phone_time_zones() in od/phone.h.
 */
#ifndef OD_PHONE_TZ_TABLE_H
#define OD_PHONE_TZ_TABLE_H

#include <stddef.h>

/** One prefix of the map. */
typedef struct od_phone__tz_entry {
    const char *prefix; /**< digits: country calling code + start of the national number */
    const char *zones;  /**< IANA zone names joined by ",", sorted; never empty */
} od_phone__tz_entry_t;

/** The map, sorted by prefix in strcmp order (od_phone__tz_count entries). */
extern const od_phone__tz_entry_t od_phone__tz_table[];
extern const size_t od_phone__tz_count;
/** Length of the longest prefix. */
extern const size_t od_phone__tz_longest;
/** The Debian version of python3-phonenumbers the table was made from. */
extern const char od_phone__tz_version[];

#endif
