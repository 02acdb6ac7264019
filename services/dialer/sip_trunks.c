/*
 * The sip provider's named trunks (OUTDIAL_SIP_TRUNKS_FILE, docs/sip.md
 * "Trunks"): the file read and checked at start, and the choice of a call's
 * trunk. Everything that is wrong in the file stops the dialer with one line
 * naming the file and the trunk; a password never appears in it (only the
 * name of its variable or file does).
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/phone.h"
#include "provider.h"

#define TRUNK_NAME_MAX 64
#define SECRET_MAX 512

/* The keys of one trunk object, in the order of the docs. */
static const char *const trunk_keys[] = {"name",     "address",       "transport", "username",       "password_env",
                                         "password_file", "realm",   "cps",       "max_concurrent", "projects",
                                         "caller_ids"};

int provider_sip_read_secret(const char *path, char *out, size_t outlen, char *errstr, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(errstr, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int ok = fgets(out, (int)outlen, f) != NULL;
    fclose(f);
    if (!ok) {
        out[0] = '\0';
        snprintf(errstr, errlen, "%s: empty", path);
        return -1;
    }
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

int provider_sip__hostport(const char *s, int dport, struct sockaddr_storage *out, char *host, size_t hostlen,
                           int *port)
{
    char h[128];
    const char *colon;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (end == NULL || (size_t)(end - s - 1) >= sizeof(h))
            return -1;
        snprintf(h, sizeof(h), "%.*s", (int)(end - s - 1), s + 1);
        colon = end[1] == ':' ? end + 1 : NULL;
    } else {
        colon = strrchr(s, ':');
        size_t n = colon != NULL ? (size_t)(colon - s) : strlen(s);
        if (n >= sizeof(h))
            return -1;
        snprintf(h, sizeof(h), "%.*s", (int)n, s);
    }
    int p = dport;
    if (colon != NULL) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (colon[1] == '\0' || *end != '\0' || v < 0 || v > 65535)
            return -1;
        p = (int)v;
    }
    if (uv_ip4_addr(h, p, (struct sockaddr_in *)out) != 0 && uv_ip6_addr(h, p, (struct sockaddr_in6 *)out) != 0)
        return -1;
    if (host != NULL) {
        if (strlen(h) >= hostlen)
            return -1;
        memcpy(host, h, strlen(h) + 1);
    }
    if (port != NULL)
        *port = p;
    return 0;
}

/* ------------------------------------------------------------------ reading the file */

typedef struct load {
    const char *path;
    char *errstr;
    size_t errlen;
} load_t;

/* One error line: "OUTDIAL_SIP_TRUNKS_FILE <path>: trunk "<name>": <what>"; -1. */
static int fail(const load_t *ld, const char *trunk, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(const load_t *ld, const char *trunk, const char *fmt, ...)
{
    char what[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (trunk != NULL)
        snprintf(ld->errstr, ld->errlen, "OUTDIAL_SIP_TRUNKS_FILE %s: trunk \"%s\": %s", ld->path, trunk, what);
    else
        snprintf(ld->errstr, ld->errlen, "OUTDIAL_SIP_TRUNKS_FILE %s: %s", ld->path, what);
    return -1;
}

/* An optional string member: "" when absent, -1 when not a string. */
static int opt_string(const load_t *ld, const char *trunk, json_t *obj, const char *key, const char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = "";
    if (v == NULL)
        return 0;
    if (!json_is_string(v))
        return fail(ld, trunk, "%s must be a string", key);
    *out = json_string_value(v);
    return 0;
}

/* An optional number member in [lo, hi]: `def` when absent. */
static int opt_number(const load_t *ld, const char *trunk, json_t *obj, const char *key, double lo, double hi,
                      int integer, double def, double *out)
{
    json_t *v = json_object_get(obj, key);
    *out = def;
    if (v == NULL)
        return 0;
    if (integer ? !json_is_integer(v) : !json_is_number(v))
        return fail(ld, trunk, "%s must be %s from %g to %g", key, integer ? "an integer" : "a number", lo, hi);
    *out = json_number_value(v);
    if (*out < lo || *out > hi)
        return fail(ld, trunk, "%s must be %s from %g to %g", key, integer ? "an integer" : "a number", lo, hi);
    return 0;
}

/* A selector list (projects: UUIDs, lower-cased; caller_ids: E.164, normalised as claims carry them). */
static int selectors(const load_t *ld, const char *trunk, json_t *obj, const char *key, char ***out, size_t *n)
{
    json_t *arr = json_object_get(obj, key);
    int uuid = strcmp(key, "projects") == 0;
    *out = NULL;
    *n = 0;
    if (arr == NULL)
        return 0;
    if (!json_is_array(arr))
        return fail(ld, trunk, "%s must be an array of %s", key, uuid ? "project UUIDs" : "E.164 numbers");
    *out = od_calloc(json_array_size(arr) + 1, sizeof(char *));
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        const char *s = json_string_value(v);
        char norm[64];
        if (uuid) {
            if (s == NULL || od_uuid_check(s, strlen(s)) != 0)
                return fail(ld, trunk, "projects[%zu] is not a project UUID", i);
            for (size_t k = 0; s[k] != '\0'; k++)
                norm[k] = (char)tolower((unsigned char)s[k]);
            norm[strlen(s)] = '\0';
        } else {
            char e164[OD_PHONE_E164_SIZE];
            if (s == NULL || od_phone_parse_e164(s, strlen(s), e164, NULL) != 0)
                return fail(ld, trunk, "caller_ids[%zu] is not an E.164 number", i);
            snprintf(norm, sizeof(norm), "%s", e164);
        }
        (*out)[(*n)++] = od_strdup(norm);
    }
    return 0;
}

/* The password of a trunk with a username: from exactly one of password_env and password_file. */
static int password(const load_t *ld, const char *trunk, json_t *obj, const char *username, char **out)
{
    const char *env, *file;
    if (opt_string(ld, trunk, obj, "password_env", &env) != 0 || opt_string(ld, trunk, obj, "password_file", &file) != 0)
        return -1;
    if (env[0] != '\0' && file[0] != '\0')
        return fail(ld, trunk, "password_env and password_file are both given: keep one");
    if (env[0] == '\0' && file[0] == '\0') {
        if (username[0] != '\0')
            return fail(ld, trunk, "username \"%s\" has no password: give password_env or password_file", username);
        *out = od_strdup("");
        return 0;
    }
    if (env[0] != '\0') {
        const char *v = getenv(env);
        if (v == NULL || v[0] == '\0')
            return fail(ld, trunk, "password_env: the environment variable %s is not set", env);
        *out = od_strdup(v);
        return 0;
    }
    char secret[SECRET_MAX], err[320];
    if (provider_sip_read_secret(file, secret, sizeof(secret), err, sizeof(err)) != 0)
        return fail(ld, trunk, "password_file %s", err);
    *out = od_strdup(secret);
    return 0;
}

static int load_trunk(const load_t *ld, size_t idx, json_t *obj, provider_sip_trunk_t *t)
{
    char label[32];
    snprintf(label, sizeof(label), "#%zu", idx + 1); /* until the name is known */
    if (!json_is_object(obj))
        return fail(ld, label, "must be an object");
    json_t *name = json_object_get(obj, "name");
    const char *s = json_string_value(name);
    if (s == NULL || s[0] == '\0' || strlen(s) > TRUNK_NAME_MAX)
        return fail(ld, label, "name must be a string of 1 to %d characters", TRUNK_NAME_MAX);
    for (const char *p = s; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && strchr("-_.", *p) == NULL)
            return fail(ld, label, "name may hold only letters, digits, '-', '_' and '.'");
    if (strcmp(s, "default") == 0)
        return fail(ld, label, "the name \"default\" is the OUTDIAL_SIP_TRUNK trunk's");
    t->name = od_strdup(s);
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        size_t k = 0;
        while (k < OD_ARRAY_SIZE(trunk_keys) && strcmp(key, trunk_keys[k]) != 0)
            k++;
        if (k == OD_ARRAY_SIZE(trunk_keys))
            return fail(ld, t->name, "unknown key \"%s\"", key);
    }
    const char *addr, *transport, *username, *realm;
    if (opt_string(ld, t->name, obj, "address", &addr) != 0 || opt_string(ld, t->name, obj, "transport", &transport) != 0 ||
        opt_string(ld, t->name, obj, "username", &username) != 0 || opt_string(ld, t->name, obj, "realm", &realm) != 0)
        return -1;
    struct sockaddr_storage sa;
    if (addr[0] == '\0')
        return fail(ld, t->name, "address is missing");
    if (provider_sip__hostport(addr, 5060, &sa, NULL, 0, NULL) != 0)
        return fail(ld, t->name, "address \"%s\" is not an IP address and port (names are not resolved)", addr);
    if (transport[0] != '\0' && strcmp(transport, "udp") != 0 && strcmp(transport, "tcp") != 0)
        return fail(ld, t->name, "transport \"%s\" is not udp or tcp", transport);
    t->tcp = strcmp(transport, "tcp") == 0;
    t->address = od_strdup(addr);
    t->username = od_strdup(username);
    t->realm = od_strdup(realm);
    if (password(ld, t->name, obj, username, (char **)&t->password) != 0)
        return -1;
    double cps, maxc;
    if (opt_number(ld, t->name, obj, "cps", 0.01, 100000, 0, 10, &cps) != 0 ||
        opt_number(ld, t->name, obj, "max_concurrent", 1, 1000000, 1, 100, &maxc) != 0)
        return -1;
    t->cps = cps;
    t->max_concurrent = (int64_t)maxc;
    if (selectors(ld, t->name, obj, "projects", &t->projects, &t->nprojects) != 0 ||
        selectors(ld, t->name, obj, "caller_ids", &t->caller_ids, &t->ncaller_ids) != 0)
        return -1;
    if (t->nprojects == 0 && t->ncaller_ids == 0)
        return fail(ld, t->name, "selects no call: give it projects or caller_ids");
    return 0;
}

static int listed(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return 1;
    return 0;
}

/* Where else `sel` is listed (trunk index `*other`), among the trunks before `t` and earlier in its own list. */
static int claimed(const provider_sip_trunk_t *trunks, size_t t, int caller, size_t k, size_t *other)
{
    const char *sel = caller ? trunks[t].caller_ids[k] : trunks[t].projects[k];
    for (size_t j = 0; j <= t; j++) {
        size_t n = j == t ? k : caller ? trunks[j].ncaller_ids : trunks[j].nprojects;
        if (listed(caller ? trunks[j].caller_ids : trunks[j].projects, n, sel)) {
            *other = j;
            return 1;
        }
    }
    return 0;
}

/* Names unique; a project or caller ID in one trunk at most (the choice must not depend on the file's order). */
static int check_unique(const load_t *ld, const provider_sip_trunk_t *trunks, size_t n)
{
    for (size_t t = 0; t < n; t++) {
        for (size_t j = 0; j < t; j++)
            if (strcmp(trunks[j].name, trunks[t].name) == 0)
                return fail(ld, trunks[t].name, "the name is used by two trunks");
        for (int caller = 0; caller < 2; caller++) {
            size_t nsel = caller ? trunks[t].ncaller_ids : trunks[t].nprojects, other;
            for (size_t k = 0; k < nsel; k++) {
                if (!claimed(trunks, t, caller, k, &other))
                    continue;
                const char *sel = caller ? trunks[t].caller_ids[k] : trunks[t].projects[k];
                if (other == t)
                    return fail(ld, trunks[t].name, "%s %s is listed twice", caller ? "caller ID" : "project", sel);
                return fail(ld, trunks[t].name, "%s %s is claimed by trunk \"%s\" too", caller ? "caller ID" : "project",
                            sel, trunks[other].name);
            }
        }
    }
    return 0;
}

int provider_sip_trunks_load(const char *path, provider_sip_trunk_t **out, size_t *nout, char *errstr, size_t errlen)
{
    load_t ld = {path, errstr, errlen};
    json_error_t jerr;
    *out = NULL;
    *nout = 0;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        if (jerr.line < 0)
            return fail(&ld, NULL, "%s", jerr.text); /* cannot be read */
        return fail(&ld, NULL, "not JSON at line %d: %s", jerr.line, jerr.text);
    }
    json_t *arr = json_object_get(root, "trunks");
    if (!json_is_object(root) || json_object_size(root) != 1 || !json_is_array(arr)) {
        json_decref(root);
        return fail(&ld, NULL, "must be an object {\"trunks\": [...]} and nothing else");
    }
    size_t n = json_array_size(arr);
    provider_sip_trunk_t *trunks = od_calloc(n + 1, sizeof(*trunks));
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = load_trunk(&ld, i, json_array_get(arr, i), &trunks[i]);
    if (rc == 0)
        rc = check_unique(&ld, trunks, n);
    json_decref(root);
    if (rc != 0) {
        provider_sip_trunks_free(trunks, n);
        return -1;
    }
    *out = trunks;
    *nout = n;
    return 0;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void provider_sip_trunks_free(provider_sip_trunk_t *trunks, size_t n)
{
    if (trunks == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        provider_sip_trunk_t *t = &trunks[i];
        if (t->password != NULL) /* not left behind in freed memory */
            memset((char *)t->password, 0, strlen(t->password));
        const char *own[] = {t->name, t->address, t->username, t->password, t->realm};
        for (size_t k = 0; k < OD_ARRAY_SIZE(own); k++)
            free((void *)own[k]);
        free_list(t->projects, t->nprojects);
        free_list(t->caller_ids, t->ncaller_ids);
    }
    free(trunks);
}

/* ------------------------------------------------------------------ the choice */

int provider_sip_trunk_select(const provider_sip_trunk_t *trunks, size_t n, const char *project_id,
                              const char *caller_id)
{
    /* a caller ID is the narrower choice: it wins over the project (a number bought from one carrier) */
    if (caller_id != NULL && caller_id[0] != '\0')
        for (size_t i = 0; i < n; i++)
            if (listed(trunks[i].caller_ids, trunks[i].ncaller_ids, caller_id))
                return (int)i;
    if (project_id != NULL && project_id[0] != '\0')
        for (size_t i = 0; i < n; i++)
            if (listed(trunks[i].projects, trunks[i].nprojects, project_id))
                return (int)i;
    return -1;
}
