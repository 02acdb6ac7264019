/*
 * outdial core: memory wrappers, time, small macros shared by every library
 * and service. Like h2o_mem_alloc and redis' zmalloc, the allocation wrappers
 * abort on out-of-memory, so callers never check for NULL.
 */
#ifndef OD_CORE_H
#define OD_CORE_H

#include <stddef.h>
#include <stdint.h>

#define OD_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define od_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))
#define OD_MIN(a, b) ((a) < (b) ? (a) : (b))
#define OD_MAX(a, b) ((a) > (b) ? (a) : (b))

/** malloc that aborts on out-of-memory. */
void *od_malloc(size_t sz);
/** calloc that aborts on out-of-memory. */
void *od_calloc(size_t n, size_t sz);
/** realloc that aborts on out-of-memory. */
void *od_realloc(void *p, size_t sz);
/** strdup that aborts on out-of-memory; NULL in gives NULL out. */
char *od_strdup(const char *s);
/** strndup that aborts on out-of-memory. */
char *od_strndup(const char *s, size_t n);

/** Wall-clock time, microseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t od_now_us(void);
/** Monotonic time in milliseconds (CLOCK_MONOTONIC), for timeouts and rates. */
int64_t od_mono_ms(void);

/** Fills `buf` with `len` cryptographically random bytes (getrandom); aborts on failure. */
void od_random_bytes(void *buf, size_t len);
/** Writes the `len` bytes at `p` as 2 × len lowercase hex digits and a NUL into `out`. */
void od_hex(const void *p, size_t len, char *out);
/** Writes `nbytes` random bytes (at most 64) as 2 × nbytes hex digits and a NUL into `out`: tags, tokens. */
void od_random_hex(char *out, size_t nbytes);

/** This process among the copies of a service, for leases in PostgreSQL:
 *  "<host>-<pid>-<6 random hex>" (host name characters other than
 *  letters, digits, '.' and '-' become '_'), NUL-terminated within `size`. */
void od_instance_id(char *out, size_t size);

/** Writes a UUIDv7 (time-ordered, RFC 9562) as 36 chars + NUL into `out`.
 *  Ids made later sort after ids made earlier, so id order is creation order. */
void od_uuid7(char out[37]);
/** 0 if `s` (length `len`) is a canonical lower- or upper-case UUID, else -1. */
int od_uuid_check(const char *s, size_t len);

#endif
