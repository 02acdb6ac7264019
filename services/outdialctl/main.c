/*
 * outdialctl: the operator CLI (DESIGN §5). Talks to PostgreSQL directly
 * (OUTDIAL_PG_DSN); `topics create` talks to Kafka (OUTDIAL_KAFKA_BROKERS);
 * `batch` talks to the public API (OUTDIAL_URL, OUTDIAL_API_KEY; batch.c).
 */
#include <jansson.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "od/core.h"
#include "od/phone.h"
#include "od/retry.h"
#include "od/secret.h"
#include "od/window.h"

static const char usage[] =
    "usage: outdialctl [--json] COMMAND ...\n"
    "\n"
    "  migrate [--dir DIR]                          apply proto/sql migrations (default DIR: $OUTDIAL_SQL_DIR or proto/sql);\n"
    "                                               then, with $OUTDIAL_SECRET_KEY, encrypt the webhook secrets not yet\n"
    "                                               encrypted with it (plain, or $OUTDIAL_SECRET_KEY_PREVIOUS's)\n"
    "  topics create [--partitions N] [--replication N]\n"
    "                                               create the Kafka topics (prefix $OUTDIAL_TOPIC_PREFIX)\n"
    "  project create NAME [--pacing N] [--wallet MICROS]      prints the project id\n"
    "  project set ID [--pacing N] [--wallet MICROS] [--calls-per-min N] [--requests-per-hour N]\n"
    "                 [--price-per-min MICROS]     (a new --wallet balance is a ledger adjustment)\n"
    "                 [--calling-windows JSON|none] calling windows in the recipient's local time, e.g.\n"
    "                                               '[{\"days\":\"mon-fri\",\"from\":\"09:00\",\"to\":\"20:00\"}]'\n"
    "                                               (docs/quiet-hours.md); none: no windows\n"
    "                 [--retry-on no_answer,busy] [--retry-max-attempts N] [--retry-delay-s S]\n"
    "                                               retry policy: states retried (empty: none), attempts in all\n"
    "                                               (1..10, the first counts; 1: no retry), delay (1..604800 s)\n"
    "                 [--recording-retention-days N] keep call recordings N days (0-36500, default 90;\n"
    "                                               0: deleted at once; docs/recordings.md)\n"
    "                 [--max-api-keys N]           active API keys the project may have (default 100)\n"
    "  project topup ID MICROS [--reason TEXT]      add to the wallet (a ledger top-up)\n"
    "  scenario add PROJECT IDN [--disclosure TEXT]\n"
    "  caller-id add PROJECT E164\n"
    "  key create PROJECT --scopes a,b [--name N]   prints the key (shown once)\n"
    "  key revoke ID\n"
    "  demo                                         create the demo project; prints project id and admin key\n"
    "  batch upload FILE --scenario S [--pacing N] [--start-at T] [--caller-id C] [--idempotency-key K]\n"
    "               [--retry-on L] [--retry-max-attempts N] [--retry-delay-s S] (the batch's own retry policy)\n"
    "               [--wait yes|no]                 upload a CSV batch (progress on stderr), wait until it is\n"
    "                                               validated (unless --wait no); prints the batch (JSON)\n"
    "  batch watch ID [--interval-ms N]             follow a batch's calls until completed or canceled\n"
    "                                               (default every 5000 ms); prints the final batch (JSON)\n"
    "\n"
    "Scopes: outbound:trigger, sessions:read, webhooks:manage, dnc:manage, admin.\n"
    "Environment: OUTDIAL_PG_DSN, OUTDIAL_KAFKA_BROKERS, OUTDIAL_TOPIC_PREFIX, OUTDIAL_SQL_DIR;\n"
    "  migrate: OUTDIAL_SECRET_KEY, OUTDIAL_SECRET_KEY_PREVIOUS (docs/webhooks.md, \"Secrets at rest\");\n"
    "  batch: OUTDIAL_URL (default http://127.0.0.1:8080), OUTDIAL_API_KEY (required).\n";

static int json_out;

/* --name VALUE options after the positional arguments */
static const char *opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc - 1; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static int check_opts(int argc, char **argv, int npos, const char *const *allowed)
{
    for (int i = npos; i < argc; i += 2) {
        int ok = 0;
        for (const char *const *a = allowed; *a != NULL; a++)
            ok |= strcmp(argv[i], *a) == 0;
        if (!ok || i + 1 >= argc) {
            fprintf(stderr, "outdialctl: unexpected or incomplete option \"%s\"\n", argv[i]);
            return -1;
        }
    }
    return 0;
}

static int is_int(const char *s)
{
    if (s == NULL)
        return 1;
    char *end;
    strtoll(s, &end, 10);
    return *s != '\0' && *end == '\0';
}

static PGconn *connect_pg(void)
{
    const char *dsn = getenv("OUTDIAL_PG_DSN");
    PGconn *conn = PQconnectdb(dsn ? dsn : "host=127.0.0.1 port=55432 user=outdial dbname=outdial");
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "outdialctl: cannot connect to PostgreSQL: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, NULL, NULL);
    /* the actor of this session's changes, for the audit log (proto/sql/006_control.sql) */
    char host[64] = "";
    gethostname(host, sizeof(host) - 1);
    const char *user = getenv("USER");
    json_t *a = json_pack("{ss ss ss}", "type", "operator", "user", user ? user : "?", "host", host);
    char *actor = a ? json_dumps(a, JSON_COMPACT) : NULL; /* NULL (no user or host in UTF-8): "operator" */
    const char *params[1] = {actor ? actor : "{\"type\":\"operator\"}"};
    PQclear(PQexecParams(conn, "SELECT set_config('outdial.actor', $1, false)", 1, NULL, params, NULL, NULL, 0));
    free(actor);
    json_decref(a);
    return conn;
}

/* Runs a statement; returns the result or NULL after printing the error. */
static PGresult *run(PGconn *conn, const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK && PQresultStatus(r) != PGRES_COMMAND_OK) {
        fprintf(stderr, "outdialctl: %s", PQerrorMessage(conn));
        PQclear(r);
        return NULL;
    }
    return r;
}

static int print_id(PGresult *r, const char *what)
{
    if (r == NULL)
        return 1;
    if (PQntuples(r) == 0) {
        fprintf(stderr, "outdialctl: no such %s\n", what);
        PQclear(r);
        return 1;
    }
    if (json_out)
        printf("{\"id\": \"%s\"}\n", PQgetvalue(r, 0, 0));
    else
        printf("%s\n", PQgetvalue(r, 0, 0));
    PQclear(r);
    return 0;
}

static int project_create(PGconn *conn, const char *name, const char *pacing, const char *wallet, int quiet)
{
    char id[37];
    od_uuid7(id);
    const char *p[4] = {id, name, pacing ? pacing : "5", wallet ? wallet : "0"};
    PGresult *r = run(conn,
                      "WITH n AS (INSERT INTO projects (id, name, pacing_per_min, wallet_micros) "
                      "VALUES ($1, $2, $3, $4) RETURNING id, wallet_micros), "
                      "l AS (INSERT INTO wallet_ledger (project_id, amount_micros, reason) "
                      "SELECT id, wallet_micros, 'opening balance' FROM n WHERE wallet_micros <> 0) "
                      "SELECT id FROM n",
                      4, p);
    if (quiet) {
        int ok = r != NULL;
        PQclear(r);
        return ok ? 0 : 1;
    }
    return print_id(r, "project");
}

static int key_create(PGconn *conn, const char *project, const char *scopes, const char *name, char key[OD_API_KEY_LEN + 1],
                      char id[37])
{
    static const char *const known[] = {"outbound:trigger", "sessions:read", "webhooks:manage", "dnc:manage", "admin"};
    char arr[512];
    size_t n = 0;
    arr[n++] = '{';
    for (const char *s = scopes; *s != '\0';) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        int ok = 0;
        for (size_t i = 0; i < OD_ARRAY_SIZE(known); i++)
            ok |= strlen(known[i]) == len && memcmp(known[i], s, len) == 0;
        if (!ok || n + len + 2 >= sizeof(arr)) {
            fprintf(stderr, "outdialctl: unknown scope \"%.*s\"\n", (int)len, s);
            return 1;
        }
        if (n > 1)
            arr[n++] = ',';
        memcpy(arr + n, s, len);
        n += len;
        s += len + (comma ? 1 : 0);
    }
    arr[n++] = '}';
    arr[n] = '\0';
    if (n == 2) {
        fprintf(stderr, "outdialctl: --scopes needs at least one scope\n");
        return 1;
    }
    od_api_key_issued_t k;
    od_api_key_issue(&k);
    memcpy(key, k.key, sizeof(k.key));
    od_uuid7(id);
    const char *p[6] = {id, project, name ? name : "", arr, k.hash, k.prefix};
    PGresult *r = run(conn,
                      "INSERT INTO api_keys (id, project_id, name, scopes, key_hash, key_prefix) "
                      "VALUES ($1, $2, $3, $4, $5, $6)",
                      6, p);
    if (r == NULL)
        return 1;
    PQclear(r);
    return 0;
}

int main(int argc, char **argv)
{
    int a = 1;
    if (a < argc && strcmp(argv[a], "--json") == 0)
        json_out = 1, a++;
    if (a >= argc || strcmp(argv[a], "--help") == 0 || strcmp(argv[a], "-h") == 0) {
        fputs(usage, a >= argc ? stderr : stdout);
        return a >= argc ? 2 : 0;
    }
    /* allow --json anywhere */
    for (int i = a; i < argc; i++)
        if (strcmp(argv[i], "--json") == 0) {
            json_out = 1;
            memmove(argv + i, argv + i + 1, sizeof(*argv) * (size_t)(argc - i - 1));
            argc--;
            i--;
        }
    const char *cmd = argv[a], *sub = a + 1 < argc ? argv[a + 1] : "";
    int rest = argc - a - 2; /* arguments after "cmd sub" */
    char **args = argv + a + 2;

    if (strcmp(cmd, "topics") == 0 && strcmp(sub, "create") == 0) {
        static const char *const allowed[] = {"--partitions", "--replication", NULL};
        const char *parts = opt(rest, args, "--partitions"), *repl = opt(rest, args, "--replication");
        if (check_opts(rest, args, 0, allowed) != 0 || !is_int(parts) || !is_int(repl))
            return 2;
        const char *brokers = getenv("OUTDIAL_KAFKA_BROKERS"), *prefix = getenv("OUTDIAL_TOPIC_PREFIX");
        return ctl_topics_create(brokers ? brokers : "127.0.0.1:59092", prefix ? prefix : "outdial.",
                                 parts ? atoi(parts) : 6, repl ? atoi(repl) : 1) == 0
                   ? 0
                   : 1;
    }

    if (strcmp(cmd, "batch") == 0 && strcmp(sub, "upload") == 0 && rest >= 1) {
        static const char *const allowed[] = {"--scenario",      "--pacing",   "--start-at",
                                              "--caller-id",     "--idempotency-key",
                                              "--wait",          "--retry-on", "--retry-max-attempts",
                                              "--retry-delay-s", NULL};
        if (check_opts(rest, args, 1, allowed) != 0)
            return 2;
        ctl_batch_upload_opts_t o = {
            .scenario = opt(rest - 1, args + 1, "--scenario"),
            .pacing = opt(rest - 1, args + 1, "--pacing"),
            .start_at = opt(rest - 1, args + 1, "--start-at"),
            .caller_id = opt(rest - 1, args + 1, "--caller-id"),
            .idempotency_key = opt(rest - 1, args + 1, "--idempotency-key"),
            .retry_on = opt(rest - 1, args + 1, "--retry-on"),
            .retry_max_attempts = opt(rest - 1, args + 1, "--retry-max-attempts"),
            .retry_delay_s = opt(rest - 1, args + 1, "--retry-delay-s"),
        };
        const char *wait = opt(rest - 1, args + 1, "--wait");
        if (wait != NULL && strcmp(wait, "yes") != 0 && strcmp(wait, "no") != 0)
            return fprintf(stderr, "outdialctl: --wait takes yes or no\n"), 2;
        o.no_wait = wait != NULL && strcmp(wait, "no") == 0;
        if (o.scenario == NULL)
            return fprintf(stderr, "outdialctl: batch upload FILE --scenario S [--pacing N] [--start-at T] "
                                   "[--caller-id C] [--idempotency-key K] [--wait yes|no]\n"),
                   2;
        if (!is_int(o.pacing))
            return fprintf(stderr, "outdialctl: --pacing takes an integer (calls per minute)\n"), 2;
        return ctl_batch_upload(args[0], &o);
    }
    if (strcmp(cmd, "batch") == 0 && strcmp(sub, "watch") == 0 && rest >= 1) {
        static const char *const allowed[] = {"--interval-ms", NULL};
        if (check_opts(rest, args, 1, allowed) != 0)
            return 2;
        const char *iv = opt(rest - 1, args + 1, "--interval-ms");
        if (!is_int(iv) || (iv != NULL && (atol(iv) < 1 || atol(iv) > 3600000)))
            return fprintf(stderr, "outdialctl: --interval-ms takes an integer from 1 to 3600000\n"), 2;
        return ctl_batch_watch(args[0], iv ? atol(iv) : 5000);
    }

    PGconn *conn = NULL;
    int rc = 2;
    if (strcmp(cmd, "migrate") == 0) {
        /* "migrate [--dir DIR]": the sub-command slot holds the options */
        static const char *const allowed[] = {"--dir", NULL};
        if (check_opts(argc - a - 1, argv + a + 1, 0, allowed) != 0)
            return 2;
        const char *dir = opt(argc - a - 1, argv + a + 1, "--dir");
        if (dir == NULL)
            dir = getenv("OUTDIAL_SQL_DIR");
        if ((conn = connect_pg()) == NULL)
            return 1;
        rc = ctl_migrate(conn, dir ? dir : "proto/sql") == 0 && ctl_seal_secrets(conn) == 0 ? 0 : 1;
    } else if (strcmp(cmd, "project") == 0 && strcmp(sub, "create") == 0 && rest >= 1) {
        static const char *const allowed[] = {"--pacing", "--wallet", NULL};
        const char *pacing = opt(rest, args, "--pacing"), *wallet = opt(rest, args, "--wallet");
        if (check_opts(rest, args, 1, allowed) != 0 || !is_int(pacing) || !is_int(wallet))
            return 2;
        if ((conn = connect_pg()) == NULL)
            return 1;
        rc = project_create(conn, args[0], pacing, wallet, 0);
    } else if (strcmp(cmd, "project") == 0 && strcmp(sub, "set") == 0 && rest >= 1) {
        static const char *const allowed[] = {"--pacing",           "--wallet",         "--calls-per-min",
                                              "--requests-per-hour", "--price-per-min",  "--calling-windows",
                                              "--retry-on",          "--retry-max-attempts", "--retry-delay-s",
                                              "--recording-retention-days", "--max-api-keys", NULL};
        const char *p[13] = {args[0], opt(rest, args, "--pacing"), opt(rest, args, "--wallet"),
                             opt(rest, args, "--calls-per-min"), opt(rest, args, "--requests-per-hour"),
                             opt(rest, args, "--price-per-min"), NULL, "0", NULL, NULL, NULL,
                             opt(rest, args, "--recording-retention-days"), opt(rest, args, "--max-api-keys")};
        if (check_opts(rest, args, 1, allowed) != 0)
            return 2;
        for (int i = 1; i < 6; i++)
            if (!is_int(p[i]))
                return fprintf(stderr, "outdialctl: options take integers\n"), 2;
        /* the retry policy: checked as the batch upload fields are (od/retry.h); NULL keeps a setting */
        od_retry_policy_t rp;
        od_retry_error_t rerr;
        const char *r_max = opt(rest, args, "--retry-max-attempts"), *r_delay = opt(rest, args, "--retry-delay-s");
        if (od_retry_policy_parse(opt(rest, args, "--retry-on"), r_max, r_delay, &rp, &rerr) != 0)
        {
            char flag[32]; /* the option's name: retry_max_attempts is --retry-max-attempts */
            snprintf(flag, sizeof(flag), "%s", rerr.field);
            for (char *q = flag; *q != '\0'; q++)
                *q = *q == '_' ? '-' : *q;
            return fprintf(stderr, "outdialctl: --%s: %s\n", flag, rerr.detail), 2;
        }
        p[8] = rp.on >= 0 ? od_retry_on_pg(rp.on) : NULL;
        p[9] = r_max;
        p[10] = r_delay;
        if (!is_int(p[11]) || (p[11] != NULL && (atoll(p[11]) < 0 || atoll(p[11]) > 36500)))
            return fprintf(stderr, "outdialctl: --recording-retention-days takes a number of days, 0 to 36500\n"), 2;
        if (!is_int(p[12]) || (p[12] != NULL && (atoll(p[12]) < 1 || atoll(p[12]) > 1000000)))
            return fprintf(stderr, "outdialctl: --max-api-keys takes a number of keys, 1 to 1000000\n"), 2;
        /* --calling-windows: $7 the canonical form, $8 "1" to change them (none: to NULL) */
        const char *cw = opt(rest, args, "--calling-windows");
        char *windows = NULL;
        if (cw != NULL && strcmp(cw, "none") != 0) {
            char err[256], field[64];
            if (od_window_parse(cw, strlen(cw), "--calling-windows", &windows, err, sizeof err, field,
                                sizeof field) != 0)
                return fprintf(stderr, "outdialctl: %s: %s\n", field, err), 2;
        }
        p[6] = windows;
        p[7] = cw != NULL ? "1" : "0";
        if ((conn = connect_pg()) == NULL) {
            free(windows);
            return 1;
        }
        /* a new wallet balance is an adjustment in the ledger (its difference), as billing shows it */
        rc = print_id(run(conn,
                          "WITH old AS (SELECT wallet_micros FROM projects WHERE id = $1::uuid FOR UPDATE), "
                          "u AS (UPDATE projects SET pacing_per_min = coalesce($2::integer, pacing_per_min), "
                          "wallet_micros = coalesce($3::bigint, wallet_micros), "
                          "calls_per_min = coalesce($4::integer, calls_per_min), "
                          "requests_per_hour = coalesce($5::integer, requests_per_hour), "
                          "price_per_min_micros = coalesce($6::bigint, price_per_min_micros), "
                          "calling_windows = CASE WHEN $8::boolean THEN $7::jsonb ELSE calling_windows END, "
                          "retry_on = coalesce($9::text[], retry_on), "
                          "retry_max_attempts = coalesce($10::integer, retry_max_attempts), "
                          "retry_delay_s = coalesce($11::integer, retry_delay_s), "
                          "recording_retention_days = coalesce($12::integer, recording_retention_days), "
                          "max_api_keys = coalesce($13::integer, max_api_keys) "
                          "WHERE id = $1::uuid RETURNING id, wallet_micros), "
                          "l AS (INSERT INTO wallet_ledger (project_id, amount_micros, reason) "
                          "SELECT u.id, u.wallet_micros - old.wallet_micros, 'adjustment by the operator' FROM u, old "
                          "WHERE u.wallet_micros <> old.wallet_micros) "
                          "SELECT id FROM u",
                          13, p),
                      "project");
        free(windows);
    } else if (strcmp(cmd, "project") == 0 && strcmp(sub, "topup") == 0 && rest >= 2) {
        static const char *const allowed[] = {"--reason", NULL};
        if (check_opts(rest, args, 2, allowed) != 0 || !is_int(args[1]) || atoll(args[1]) <= 0)
            return fprintf(stderr, "outdialctl: project topup ID MICROS [--reason TEXT] (MICROS > 0)\n"), 2;
        const char *reason = opt(rest - 2, args + 2, "--reason");
        const char *p[3] = {args[0], args[1], reason ? reason : "top-up"};
        if ((conn = connect_pg()) == NULL)
            return 1;
        rc = print_id(run(conn,
                          "WITH u AS (UPDATE projects SET wallet_micros = wallet_micros + $2::bigint "
                          "WHERE id = $1::uuid RETURNING id), "
                          "l AS (INSERT INTO wallet_ledger (project_id, amount_micros, reason) "
                          "SELECT id, $2::bigint, $3 FROM u) "
                          "SELECT id FROM u",
                          3, p),
                      "project");
    } else if (strcmp(cmd, "scenario") == 0 && strcmp(sub, "add") == 0 && rest >= 2) {
        static const char *const allowed[] = {"--disclosure", NULL};
        if (check_opts(rest, args, 2, allowed) != 0)
            return 2;
        const char *disc = opt(rest, args, "--disclosure");
        const char *p[3] = {args[0], args[1], disc ? disc : "This call is from an AI receptionist."};
        if ((conn = connect_pg()) == NULL)
            return 1;
        rc = print_id(run(conn,
                          "INSERT INTO scenarios (project_id, idn, disclosure) VALUES ($1, $2, $3) "
                          "ON CONFLICT (project_id, idn) DO UPDATE SET disclosure = EXCLUDED.disclosure RETURNING idn",
                          3, p),
                      "scenario");
    } else if (strcmp(cmd, "caller-id") == 0 && strcmp(sub, "add") == 0 && rest == 2) {
        char e164[OD_PHONE_E164_SIZE];
        const char *code;
        if (od_phone_parse_e164(args[1], strlen(args[1]), e164, &code) != 0) {
            fprintf(stderr, "outdialctl: %s is not an E.164 number (%s)\n", args[1], code);
            return 2;
        }
        const char *p[2] = {args[0], e164};
        if ((conn = connect_pg()) == NULL)
            return 1;
        rc = print_id(run(conn,
                          "INSERT INTO caller_ids (project_id, phone) VALUES ($1, $2) "
                          "ON CONFLICT (project_id, phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING phone",
                          2, p),
                      "caller ID");
    } else if (strcmp(cmd, "key") == 0 && strcmp(sub, "create") == 0 && rest >= 1) {
        static const char *const allowed[] = {"--scopes", "--name", NULL};
        const char *scopes = opt(rest, args, "--scopes");
        if (check_opts(rest, args, 1, allowed) != 0 || scopes == NULL)
            return fprintf(stderr, "outdialctl: key create PROJECT --scopes a,b [--name N]\n"), 2;
        if ((conn = connect_pg()) == NULL)
            return 1;
        char key[OD_API_KEY_LEN + 1], id[37];
        rc = key_create(conn, args[0], scopes, opt(rest, args, "--name"), key, id);
        if (rc == 0) {
            if (json_out)
                printf("{\"id\": \"%s\", \"key\": \"%s\"}\n", id, key);
            else
                printf("%s\n", key);
        }
    } else if (strcmp(cmd, "key") == 0 && strcmp(sub, "revoke") == 0 && rest == 1) {
        const char *p[1] = {args[0]};
        if ((conn = connect_pg()) == NULL)
            return 1;
        rc = print_id(run(conn,
                          "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1::uuid "
                          "RETURNING id",
                          1, p),
                      "key");
    } else if (strcmp(cmd, "demo") == 0) {
        if ((conn = connect_pg()) == NULL)
            return 1;
        /* pacing 30/min and $100 in the wallet: enough to try every sim digit */
        PGresult *r = run(conn, "SELECT id FROM projects WHERE name = 'demo' ORDER BY created_at LIMIT 1", 0, NULL);
        if (r == NULL)
            return 1;
        int exists = PQntuples(r) > 0;
        PQclear(r);
        if (!exists && project_create(conn, "demo", "30", "100000000", 1) != 0)
            return 1;
        r = run(conn, "SELECT id FROM projects WHERE name = 'demo' ORDER BY created_at LIMIT 1", 0, NULL);
        char pid[37];
        snprintf(pid, sizeof(pid), "%s", PQgetvalue(r, 0, 0));
        PQclear(r);
        const char *p2[2] = {pid, "appointment_reminder"};
        PQclear(run(conn, "INSERT INTO scenarios (project_id, idn) VALUES ($1, $2) ON CONFLICT DO NOTHING", 2, p2));
        const char *p3[2] = {pid, "+15005550006"};
        PQclear(run(conn, "INSERT INTO caller_ids (project_id, phone) VALUES ($1, $2) ON CONFLICT DO NOTHING", 2, p3));
        char key[OD_API_KEY_LEN + 1], kid[37];
        rc = key_create(conn, pid, "admin", "demo admin", key, kid);
        if (rc == 0)
            printf(json_out ? "{\"id\": \"%s\", \"key\": \"%s\"}\n" : "%s %s\n", pid, key);
    } else {
        fputs(usage, stderr);
        return 2;
    }
    PQfinish(conn);
    return rc;
}
