#include "auth.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/log.h"
#include "od/secret.h"

#define CACHE_SLOTS 4096 /* direct-mapped by hash: a collision only costs a query */

typedef struct waiter {
    od_auth_cb cb;
    void *arg;
    struct waiter *next;
} waiter_t;

typedef struct entry {
    char hash[65];
    int64_t fetched_ms; /* 0: empty */
    int status;         /* 0 or 401 */
    od_key_t key;
} entry_t;

/* one query in flight for one key hash, with everyone waiting for it */
typedef struct lookup {
    struct od_auth *auth;
    char hash[65];
    waiter_t *waiters;
    struct lookup *next;
} lookup_t;

struct od_auth {
    od_pg_t *pg;
    int64_t ttl_ms;
    lookup_t *inflight;
    entry_t slots[CACHE_SLOTS];
};

od_auth_t *od_auth_new(od_pg_t *pg, int64_t ttl_ms)
{
    od_auth_t *auth = od_calloc(1, sizeof(*auth));
    auth->pg = pg;
    auth->ttl_ms = ttl_ms;
    return auth;
}

static entry_t *slot_of(od_auth_t *auth, const char *hash)
{
    return &auth->slots[strtoul((char[9]){hash[0], hash[1], hash[2], hash[3], hash[4], hash[5], hash[6], hash[7], 0},
                                NULL, 16) %
                        CACHE_SLOTS];
}

static int parse_key(const char *text, od_key_t *key)
{
    json_t *o = json_loads(text, 0, NULL), *scopes;
    int rc = -1;
    if (o == NULL)
        return -1;
    const char *kid = json_string_value(json_object_get(o, "key_id"));
    const char *pid = json_string_value(json_object_get(o, "project_id"));
    if (kid && pid && strlen(kid) == 36 && strlen(pid) == 36 && (scopes = json_object_get(o, "scopes")) != NULL) {
        memcpy(key->key_id, kid, 37);
        memcpy(key->project_id, pid, 37);
        key->calls_per_min = json_integer_value(json_object_get(o, "calls_per_min"));
        key->requests_per_hour = json_integer_value(json_object_get(o, "requests_per_hour"));
        key->scopes = 0;
        size_t i;
        json_t *s;
        json_array_foreach(scopes, i, s) key->scopes |= od_scope_parse(json_string_value(s), json_string_length(s));
        if (key->scopes & OD_SCOPE_ADMIN)
            key->scopes |= OD_SCOPE_TRIGGER | OD_SCOPE_READ | OD_SCOPE_WEBHOOKS | OD_SCOPE_DNC;
        rc = 0;
    }
    json_decref(o);
    return rc;
}

static void on_auth_result(void *arg, int status, PGresult *res)
{
    lookup_t *lk = arg, **pp;
    od_key_t key;
    int answer = 503;
    if (status == OD_PG_OK) {
        if (PQgetisnull(res, 0, 0))
            answer = 401;
        else if (parse_key(PQgetvalue(res, 0, 0), &key) == 0)
            answer = 0;
        else
            od_error("auth: cannot parse key record");
    } else {
        od_warn("auth: query failed: %s", res ? od_pg_errmsg(res) : "database unavailable");
    }
    for (pp = &lk->auth->inflight; *pp != lk; pp = &(*pp)->next)
        ;
    *pp = lk->next;
    if (answer != 503) {
        entry_t *e = slot_of(lk->auth, lk->hash);
        memcpy(e->hash, lk->hash, 65);
        e->status = answer;
        e->key = key;
        e->fetched_ms = od_mono_ms();
    }
    for (waiter_t *w = lk->waiters, *next; w != NULL; w = next) {
        next = w->next;
        w->cb(w->arg, answer, answer == 0 ? &key : NULL);
        free(w);
    }
    free(lk);
}

void od_auth_lookup(od_auth_t *auth, const char *key, size_t len, od_auth_cb cb, void *arg)
{
    if (len < 8 || len > 128) {
        cb(arg, 401, NULL);
        return;
    }
    char hash[65];
    od_api_key_hash(key, len, hash);
    entry_t *e = slot_of(auth, hash);
    if (e->fetched_ms != 0 && strcmp(e->hash, hash) == 0 && od_mono_ms() - e->fetched_ms < auth->ttl_ms) {
        od_key_t copy = e->key;
        cb(arg, e->status, e->status == 0 ? &copy : NULL);
        return;
    }
    waiter_t *w = od_malloc(sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    for (lookup_t *lk = auth->inflight; lk != NULL; lk = lk->next) {
        if (strcmp(lk->hash, hash) == 0) {
            w->next = lk->waiters;
            lk->waiters = w;
            return;
        }
    }
    w->next = NULL;
    lookup_t *lk = od_malloc(sizeof(*lk));
    lk->auth = auth;
    memcpy(lk->hash, hash, 65);
    lk->waiters = w;
    const char *params[1] = {hash};
    if (od_pg_query(auth->pg, "auth", 1, params, on_auth_result, lk) != 0) {
        free(w);
        free(lk);
        cb(arg, 503, NULL);
        return;
    }
    lk->next = auth->inflight;
    auth->inflight = lk;
}
