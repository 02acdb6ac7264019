/*
 * API key authentication with a short-lived cache: a key's record (project,
 * scopes, limits) is looked up in PostgreSQL by its SHA-256 and kept for
 * OUTDIAL_AUTH_CACHE_MS, so a revoked key stops working on every ingress
 * within that time. Concurrent look-ups of one key share one query.
 */
#ifndef OD_INGRESS_AUTH_H
#define OD_INGRESS_AUTH_H

#include <stdint.h>

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

/** status: 0 found (key valid), 401 unknown or revoked, 503 database unavailable. */
typedef void (*od_auth_cb)(void *arg, int status, const od_key_t *key);

od_auth_t *od_auth_new(od_pg_t *pg, int64_t ttl_ms);
/** Looks up a bearer key; may call back at once (cache hit). */
void od_auth_lookup(od_auth_t *auth, const char *key, size_t len, od_auth_cb cb, void *arg);
/** Parses a scope name; 0 if unknown. */
unsigned od_scope_parse(const char *name, size_t len);

/** SQL of the prepared statement the pool must have under "auth". */
#define OD_AUTH_SQL "SELECT od_auth($1)::text"

#endif
