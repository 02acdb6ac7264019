/*
 * Calling windows: when a project's or a batch's calls may ring, in the
 * recipient's local time (docs/quiet-hours.md). This library checks the
 * configuration as the API and outdialctl take it and writes its canonical
 * form, the one stored in PostgreSQL (projects.calling_windows,
 * batches.calling_windows) and evaluated there at dispatch
 * (od_window_next_open in proto/sql/013_quiet_hours.sql).
 *
 * Input: a JSON array of 1..OD_WINDOW_MAX windows, each an object with
 * exactly these members:
 *   "days": a string of day names and ranges separated by ",", e.g.
 *           "mon-fri", "sat", "mon,wed,fri", "sun-thu" (a range may wrap
 *           past Sunday), "mon-fri,sun"; or an array of day names. Day
 *           names: mon tue wed thu fri sat sun (any case).
 *   "from": "HH:MM", 00:00..23:59, the local time the window opens;
 *   "to":   "HH:MM", later than "from", up to "24:00" (end of the day),
 *           the local time it closes (exclusive: "to": "21:00" means the
 *           last call may start at 20:59:59).
 * Windows may overlap (their union counts). Windows that cross midnight are
 * written as two (e.g. 22:00-24:00 and 00:00-02:00 of the next days).
 *
 * Canonical form: the same array with "days" as an array of lower-case day
 * names in week order (Monday first), without repeats:
 *   [{"days":["mon","tue","wed","thu","fri"],"from":"09:00","to":"20:00"}]
 *
 * Every parser of outside input has a fuzz target: fuzz/fuzz_window.c.
 */
#ifndef OD_WINDOW_H
#define OD_WINDOW_H

#include <stddef.h>

/** Most windows in one configuration. */
#define OD_WINDOW_MAX 32

/**
 * Parses `len` bytes at `text` (need not be NUL-terminated) as calling
 * windows (above). On success returns 0 and sets `*canonical` to the
 * canonical JSON text (NUL-terminated; the caller frees it with free()).
 * On failure returns -1, sets `*canonical` to NULL and fills `errstr`
 * (`errlen` bytes, at least 1) with a sentence for the problem's detail and
 * `field` (`fieldlen` bytes, may be 0) with the member at fault, e.g.
 * "calling_windows[1].to" (the path starts with `name`). The problem code
 * is always "invalid_calling_windows".
 */
int od_window_parse(const char *text, size_t len, const char *name, char **canonical, char *errstr, size_t errlen,
                    char *field, size_t fieldlen);

#endif
