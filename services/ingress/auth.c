#include "auth.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include "od/core.h"
#include "od/log.h"
#include "od/metrics.h"
#include "od/secret.h"

#define CACHE_SLOTS 4096  /* valid keys, direct-mapped by hash: a collision only costs a query */
#define WAYS 4            /* entries per bucket of the two tables below (least recently used replaced) */
#define NEG_BUCKETS 4096  /* negative cache: 16384 keys (24 bytes each) */
#define ADDR_BUCKETS 4096 /* failures per address: 16384 addresses (40 bytes each) */

typedef struct waiter {
    od_auth_cb cb;
    void *arg;
    struct waiter *next;
    uint8_t addr[16];
    int has_addr;
    int counted; /* in its address's pending count */
} waiter_t;

typedef struct entry {
    char hash[65];
    int64_t fetched_ms; /* 0: empty */
    od_key_t key;
} entry_t;

/* a key hash the database did not know (the first 128 bits of its SHA-256) */
typedef struct neg {
    uint64_t h[2];
    int64_t at_ms; /* 0: empty */
} neg_t;

/* one client address's failed authentications in its current window */
typedef struct addr_entry {
    uint8_t addr[16];
    int64_t window_ms; /* start of the window; 0: empty */
    int64_t used_ms;
    int64_t failures;
    int64_t pending; /* look-ups of keys not seen valid, sent and not answered: counted as failures ahead */
} addr_entry_t;

/* one query in flight for one key hash, with everyone waiting for it */
typedef struct lookup {
    struct od_auth *auth;
    char hash[65];
    waiter_t *waiters;
    struct lookup *next;
} lookup_t;

struct od_auth {
    od_pg_t *pg;
    od_auth_limits_t lim;
    lookup_t *inflight;
    int64_t pending; /* lookups in inflight */
    entry_t slots[CACHE_SLOTS];
    neg_t neg[NEG_BUCKETS][WAYS];
    addr_entry_t addrs[ADDR_BUCKETS][WAYS];
    od_metric_t *m_negative, *m_address, *m_overloaded, *m_queries;
};

od_auth_t *od_auth_new(od_pg_t *pg, const od_auth_limits_t *lim)
{
    od_auth_t *auth = od_calloc(1, sizeof(*auth));
    auth->pg = pg;
    auth->lim = *lim;
    static const char help[] = "API keys answered 401 or 503 from memory, without asking PostgreSQL, by reason";
    auth->m_negative = od_counter("outdial_ingress_auth_refused_total", "reason=\"negative_cache\"", help);
    auth->m_address = od_counter("outdial_ingress_auth_refused_total", "reason=\"address_limited\"", help);
    auth->m_overloaded = od_counter("outdial_ingress_auth_refused_total", "reason=\"overloaded\"", help);
    auth->m_queries = od_counter("outdial_ingress_auth_queries_total", NULL, "API keys looked up in PostgreSQL");
    return auth;
}

static uint64_t hex64(const char *hex)
{
    char buf[17];
    memcpy(buf, hex, 16);
    buf[16] = '\0';
    return strtoull(buf, NULL, 16);
}

/* The negative cache's entry for `hash`, or NULL. */
static neg_t *neg_find(od_auth_t *auth, const char *hash, int64_t now)
{
    uint64_t h0 = hex64(hash), h1 = hex64(hash + 16);
    neg_t *b = auth->neg[h0 % NEG_BUCKETS];
    for (int i = 0; i < WAYS; i++)
        if (b[i].at_ms != 0 && b[i].h[0] == h0 && b[i].h[1] == h1 && now - b[i].at_ms < auth->lim.negative_ttl_ms)
            return &b[i];
    return NULL;
}

static void neg_add(od_auth_t *auth, const char *hash, int64_t now)
{
    uint64_t h0 = hex64(hash), h1 = hex64(hash + 16);
    neg_t *b = auth->neg[h0 % NEG_BUCKETS], *victim = &b[0];
    for (int i = 0; i < WAYS; i++) {
        if (b[i].at_ms != 0 && b[i].h[0] == h0 && b[i].h[1] == h1) {
            victim = &b[i];
            break;
        }
        if (b[i].at_ms < victim->at_ms)
            victim = &b[i];
    }
    *victim = (neg_t){{h0, h1}, now};
}

/* The address as 16 bytes: IPv4 as IPv4-mapped, IPv6 cut to its /64 (one subscriber's network). */
static int addr_key(const struct sockaddr *sa, uint8_t out[16])
{
    memset(out, 0, 16);
    if (sa == NULL)
        return 0;
    if (sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        memcpy(out, a, memcmp(a, mapped, 12) == 0 ? 16 : 8);
        return 1;
    }
    return 0;
}

/* The address's entry; with `create`, made (replacing the bucket's least recently used) if absent. */
static addr_entry_t *addr_find(od_auth_t *auth, const uint8_t addr[16], int create, int64_t now)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 1099511628211ull;
    addr_entry_t *b = auth->addrs[h % ADDR_BUCKETS], *victim = &b[0];
    for (int i = 0; i < WAYS; i++) {
        if (b[i].window_ms != 0 && memcmp(b[i].addr, addr, 16) == 0) {
            b[i].used_ms = now;
            return &b[i];
        }
        if (b[i].used_ms < victim->used_ms)
            victim = &b[i];
    }
    if (!create)
        return NULL;
    memcpy(victim->addr, addr, 16);
    victim->window_ms = victim->used_ms = now;
    victim->failures = victim->pending = 0;
    return victim;
}

/* One more 401 in the entry's window (fixed, fail_window_ms long, restarted by a 401 after it). */
static void entry_failed(od_auth_t *auth, addr_entry_t *a, int64_t now)
{
    if (now - a->window_ms >= auth->lim.fail_window_ms) {
        a->window_ms = now;
        a->failures = 0;
    }
    a->failures++;
}

/* A look-up from the address was answered (`failed`: 401); its pending count goes. */
static void addr_answered(od_auth_t *auth, const uint8_t addr[16], int failed, int64_t now)
{
    addr_entry_t *a = addr_find(auth, addr, failed, now);
    if (a == NULL)
        return;
    if (a->pending > 0)
        a->pending--;
    if (failed)
        entry_failed(auth, a, now);
}

static int addr_limited(od_auth_t *auth, const uint8_t addr[16], int64_t now)
{
    addr_entry_t *a = addr_find(auth, addr, 0, now);
    if (a == NULL)
        return 0;
    int64_t failures = now - a->window_ms < auth->lim.fail_window_ms ? a->failures : 0;
    return failures + a->pending >= auth->lim.fail_max;
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
    od_auth_t *auth = lk->auth;
    for (pp = &auth->inflight; *pp != lk; pp = &(*pp)->next)
        ;
    *pp = lk->next;
    auth->pending--;
    int64_t now = od_mono_ms();
    entry_t *e = slot_of(auth, lk->hash);
    if (answer == 0) {
        memcpy(e->hash, lk->hash, 65);
        e->key = key;
        e->fetched_ms = now;
    } else if (answer == 401) {
        if (strcmp(e->hash, lk->hash) == 0)
            e->fetched_ms = 0; /* revoked: forget it was ever valid */
        neg_add(auth, lk->hash, now);
    }
    for (waiter_t *w = lk->waiters, *next; w != NULL; w = next) {
        next = w->next;
        if (w->counted) /* a key never seen valid here: a 401 counts against its address */
            addr_answered(auth, w->addr, answer == 401, now);
        w->cb(w->arg, answer, answer == 0 ? &key : NULL);
        free(w);
    }
    free(lk);
}

void od_auth_lookup(od_auth_t *auth, const char *key, size_t len, const struct sockaddr *peer, od_auth_cb cb,
                    void *arg)
{
    uint8_t addr[16];
    int has_addr = addr_key(peer, addr);
    int64_t now = od_mono_ms();
    if (len < 8 || len > 128) {
        cb(arg, OD_AUTH_UNKNOWN, NULL); /* no key can be this: not a look-up, not counted */
        return;
    }
    char hash[65];
    od_api_key_hash(key, len, hash);
    entry_t *e = slot_of(auth, hash);
    int known = e->fetched_ms != 0 && strcmp(e->hash, hash) == 0;
    if (known && now - e->fetched_ms < auth->lim.ttl_ms) {
        od_key_t copy = e->key;
        cb(arg, OD_AUTH_OK, &copy);
        return;
    }
    /* a key seen valid (its record only stale) is always asked again: it may be a tenant's.
     * Only distinct unknown keys count against an address: a client that repeats its one
     * revoked key is misconfigured, not guessing, and must not lock out its neighbours. */
    if (!known && (neg_find(auth, hash, now) != NULL || (has_addr && addr_limited(auth, addr, now)))) {
        od_metric_add(neg_find(auth, hash, now) != NULL ? auth->m_negative : auth->m_address, 1);
        cb(arg, OD_AUTH_UNKNOWN, NULL);
        return;
    }
    waiter_t *w = od_malloc(sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->has_addr = has_addr;
    w->counted = 0;
    memcpy(w->addr, addr, 16);
    if (has_addr && !known) {
        /* counted before the answer: a burst from one address cannot send more than fail_max look-ups */
        addr_find(auth, addr, 1, now)->pending++;
        w->counted = 1;
    }
    for (lookup_t *lk = auth->inflight; lk != NULL; lk = lk->next) {
        if (strcmp(lk->hash, hash) == 0) {
            w->next = lk->waiters;
            lk->waiters = w;
            return;
        }
    }
    w->next = NULL;
    if (auth->pending >= auth->lim.max_pending) {
        if (w->counted)
            addr_answered(auth, addr, 0, now);
        free(w);
        od_metric_add(auth->m_overloaded, 1);
        cb(arg, OD_AUTH_OVERLOADED, NULL);
        return;
    }
    lookup_t *lk = od_malloc(sizeof(*lk));
    lk->auth = auth;
    memcpy(lk->hash, hash, 65);
    lk->waiters = w;
    const char *params[1] = {hash};
    int rc = od_pg_query_bounded(auth->pg, "auth", 1, params, on_auth_result, lk);
    if (rc != 0) {
        if (w->counted)
            addr_answered(auth, addr, 0, now);
        free(w);
        free(lk);
        if (rc == OD_PG_EFULL)
            od_metric_add(auth->m_overloaded, 1);
        cb(arg, rc == OD_PG_EFULL ? OD_AUTH_OVERLOADED : OD_AUTH_UNAVAILABLE, NULL);
        return;
    }
    od_metric_add(auth->m_queries, 1);
    auth->pending++;
    lk->next = auth->inflight;
    auth->inflight = lk;
}
