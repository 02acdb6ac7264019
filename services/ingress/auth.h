/*
 * API key authentication with a short-lived cache: a key's record (project,
 * scopes, limits) is looked up in PostgreSQL by its SHA-256 and kept for
 * OUTDIAL_AUTH_CACHE_MS, so a revoked key stops working on every ingress
 * within that time. Concurrent look-ups of one key share one query.
 *
 * Guessing is made cheap for us and slow for the guesser, in fixed memory:
 * - a negative cache: a key the database did not know is answered 401 from
 *   memory for OUTDIAL_AUTH_NEGATIVE_TTL_MS (keys are random: one that was
 *   unknown does not become valid later; a revoked one never does);
 * - per client address (IPv6 by /64), once OUTDIAL_AUTH_FAIL_MAX distinct
 *   keys never seen valid here were unknown to the database in the current
 *   window of OUTDIAL_AUTH_FAIL_WINDOW_MS (look-ups in flight count ahead),
 *   keys it sends that this ingress has not seen valid are answered 401
 *   from memory until the window ends (a repeated key, or a revoked one,
 *   does not count: that is a misconfigured client, not a guesser);
 * - at most OUTDIAL_AUTH_MAX_PENDING distinct keys are looked up at once;
 *   beyond, OD_AUTH_OVERLOADED (503 overloaded, Retry-After).
 * Both tables are hashed buckets of a few ways, the least recently used
 * entry replaced.
 */
#ifndef OD_INGRESS_AUTH_H
#define OD_INGRESS_AUTH_H

#include <stdint.h>

#include <sys/socket.h>

#include "od/pg.h"

enum {
    OD_SCOPE_TRIGGER = 1,   /* outbound:trigger */
    OD_SCOPE_READ = 2,      /* sessions:read */
    OD_SCOPE_WEBHOOKS = 4,  /* webhooks:manage */
    OD_SCOPE_DNC = 8,       /* dnc:manage */
    OD_SCOPE_ADMIN = 16,    /* admin: implies all the others */
};

typedef struct od_key {
    char key_id[37];
    char project_id[37];
    unsigned scopes;            /**< OD_SCOPE_* bits (admin expanded) */
    int64_t calls_per_min;
    int64_t requests_per_hour;
} od_key_t;

typedef struct od_auth od_auth_t;

/** Outcomes of a look-up (the callback's status). */
enum {
    OD_AUTH_OK = 0,            /**< the key is valid: `key` is its record */
    OD_AUTH_UNKNOWN = 401,     /**< unknown, revoked, or refused from memory (address over its failures) */
    OD_AUTH_UNAVAILABLE = 503, /**< the database could not be asked */
    OD_AUTH_OVERLOADED = 1,    /**< too many look-ups waiting: answer 503 overloaded */
};

typedef void (*od_auth_cb)(void *arg, int status, const od_key_t *key);

/** The limits of od_auth_new (see the top of this file). */
typedef struct od_auth_limits {
    int64_t ttl_ms;          /**< OUTDIAL_AUTH_CACHE_MS */
    int64_t negative_ttl_ms; /**< OUTDIAL_AUTH_NEGATIVE_TTL_MS */
    int64_t fail_max;        /**< OUTDIAL_AUTH_FAIL_MAX */
    int64_t fail_window_ms;  /**< OUTDIAL_AUTH_FAIL_WINDOW_MS */
    int64_t max_pending;     /**< OUTDIAL_AUTH_MAX_PENDING */
} od_auth_limits_t;

od_auth_t *od_auth_new(od_pg_t *pg, const od_auth_limits_t *lim);
/**
 * Looks up a bearer key sent from `peer` (NULL: unknown address, no
 * per-address limit); may call back at once (from memory).
 */
void od_auth_lookup(od_auth_t *auth, const char *key, size_t len, const struct sockaddr *peer, od_auth_cb cb,
                    void *arg);
/** Parses a scope name; 0 if unknown. */
unsigned od_scope_parse(const char *name, size_t len);

/** SQL of the prepared statement the pool must have under "auth". */
#define OD_AUTH_SQL "SELECT od_auth($1)::text"

#endif
