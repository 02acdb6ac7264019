/*
 * `outdialctl migrate`, after the migrations: the webhook secrets at rest
 * (docs/webhooks.md, "Secrets at rest"). With OUTDIAL_SECRET_KEY set, every
 * endpoint secret (and previous secret) not yet sealed with that key is
 * sealed with it: the plain whsec_ values of rows written before 023, and
 * the values sealed with OUTDIAL_SECRET_KEY_PREVIOUS during a key rotation.
 * Batches of 500 rows, each its own transaction, so a large table is not
 * locked at once and a run cut short goes on where it stopped. A value no
 * key opens stops it with an error, changing nothing more (a wrong key,
 * or a rotation without the previous key). Without the key nothing is
 * changed; rows still plain are counted in a warning.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "od/webhook.h"

#define BATCH "500"

static PGresult *exec1(PGconn *conn, const char *sql, int n, const char *const *params, ExecStatusType want,
                       const char *what)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        fprintf(stderr, "outdialctl: %s: %s", what, PQerrorMessage(conn));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* A statement without rows: 0, or -1 after saying why. */
static int cmd(PGconn *conn, const char *sql)
{
    PGresult *r = exec1(conn, sql, 0, NULL, PGRES_COMMAND_OK, sql);
    PQclear(r);
    return r != NULL ? 0 : -1;
}

static int plain_warning(PGconn *conn)
{
    PGresult *r = exec1(conn,
                        "SELECT count(*) FROM webhook_endpoints WHERE secret NOT LIKE 'odenc1:%' "
                        "OR prev_secret NOT LIKE 'odenc1:%'",
                        0, NULL, PGRES_TUPLES_OK, "webhook secrets");
    if (r == NULL)
        return -1;
    long n = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (n > 0)
        fprintf(stderr,
                "outdialctl: warning: %ld webhook endpoints have a secret stored in plain text; run outdialctl migrate "
                "with OUTDIAL_SECRET_KEY set to encrypt them (docs/webhooks.md)\n",
                n);
    return 0;
}

/* One stored value sealed with the current key into out: 0, 1 (already sealed with it), or -1. */
static int reseal(const od_webhook_keys_t *k, const char *stored, char out[OD_WEBHOOK_SEALED_MAX])
{
    char plain[OD_WEBHOOK_SECRET_LEN + 1];
    int rc = od_webhook_secret_open(k, stored, plain);
    if (rc == 0)
        return 1;
    rc = rc < 0 ? -1 : od_webhook_secret_seal(k, plain, out);
    OPENSSL_cleanse(plain, sizeof(plain));
    return rc;
}

int ctl_seal_secrets(PGconn *conn)
{
    const char *key = getenv("OUTDIAL_SECRET_KEY"), *prev = getenv("OUTDIAL_SECRET_KEY_PREVIOUS"), *why = NULL;
    if (key == NULL || key[0] == '\0')
        return plain_warning(conn);
    od_webhook_keys_t k;
    if (od_webhook_keys_init(&k, key, prev, &why) != 0) {
        fprintf(stderr, "outdialctl: %s\n", why);
        return -1;
    }
    char mine[32];
    snprintf(mine, sizeof(mine), OD_WEBHOOK_SEALED_PREFIX "%s:%%", k.kid);
    const char *params[1] = {mine};
    long sealed = 0;
    int rc = 0;
    for (;;) {
        PGresult *r = NULL;
        if (cmd(conn, "BEGIN") != 0 ||
            (r = exec1(conn,
                       "SELECT id, secret, prev_secret FROM webhook_endpoints "
                       "WHERE secret NOT LIKE $1 OR prev_secret NOT LIKE $1 ORDER BY id LIMIT " BATCH " FOR UPDATE",
                       1, params, PGRES_TUPLES_OK, "webhook secrets")) == NULL) {
            rc = -1;
            break;
        }
        int n = PQntuples(r);
        for (int i = 0; i < n && rc == 0; i++) {
            char s[OD_WEBHOOK_SEALED_MAX], p[OD_WEBHOOK_SEALED_MAX];
            int a = reseal(&k, PQgetvalue(r, i, 1), s);
            int b = PQgetisnull(r, i, 2) ? 1 : reseal(&k, PQgetvalue(r, i, 2), p);
            if (a < 0 || b < 0) {
                fprintf(stderr,
                        "outdialctl: webhook endpoint %s: its %s secret cannot be opened with OUTDIAL_SECRET_KEY or "
                        "OUTDIAL_SECRET_KEY_PREVIOUS; nothing more sealed\n",
                        PQgetvalue(r, i, 0), a < 0 ? "current" : "previous");
                rc = -1;
                break;
            }
            const char *up[3] = {PQgetvalue(r, i, 0), a == 0 ? s : NULL, b == 0 ? p : NULL};
            PGresult *u = exec1(conn,
                                "UPDATE webhook_endpoints SET secret = coalesce($2, secret), "
                                "prev_secret = coalesce($3, prev_secret) WHERE id = $1::uuid",
                                3, up, PGRES_COMMAND_OK, "sealing a webhook secret");
            OPENSSL_cleanse(s, sizeof(s));
            OPENSSL_cleanse(p, sizeof(p));
            if (u == NULL)
                rc = -1;
            PQclear(u);
        }
        PQclear(r);
        if (rc != 0) {
            PQclear(PQexec(conn, "ROLLBACK"));
            break;
        }
        if (cmd(conn, "COMMIT") != 0) {
            rc = -1;
            break;
        }
        sealed += n;
        if (n == 0)
            break;
    }
    od_webhook_keys_clear(&k);
    if (sealed > 0)
        fprintf(stderr, "outdialctl: %ld webhook endpoints' secrets sealed with key %s\n", sealed, mine + 7);
    return rc;
}
