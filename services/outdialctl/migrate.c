#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *slurp(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s == NULL || fread(s, 1, (size_t)n, fp) != (size_t)n) {
        free(s);
        fclose(fp);
        return NULL;
    }
    s[n] = '\0';
    fclose(fp);
    return s;
}

static int exec_ok(PGconn *conn, const char *sql, const char *what)
{
    PGresult *r = PQexec(conn, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "outdialctl: %s: %s", what, PQerrorMessage(conn));
    PQclear(r);
    return ok ? 0 : -1;
}

int ctl_migrate(PGconn *conn, const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "outdialctl: cannot open migrations folder %s\n", dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, ".sql") == 0 && e->d_name[0] >= '0' && e->d_name[0] <= '9') {
            names = realloc(names, sizeof(*names) * (n + 1));
            names[n++] = strdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, n, sizeof(*names), by_name);

    int rc = 0, applied = 0;
    /* one migrator at a time, whoever runs it (local run, CI, a Kubernetes Job) */
    if (exec_ok(conn, "SELECT pg_advisory_lock(7283001)", "lock") != 0 ||
        exec_ok(conn,
                "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now())",
                "schema_migrations") != 0) {
        rc = -1;
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const char *params[1] = {names[i]};
        PGresult *r = PQexecParams(conn, "SELECT 1 FROM schema_migrations WHERE version = $1", 1, NULL, params, NULL,
                                   NULL, 0);
        int done = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0;
        PQclear(r);
        if (done)
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        char *sql = slurp(path);
        if (sql == NULL) {
            fprintf(stderr, "outdialctl: cannot read %s\n", path);
            rc = -1;
            break;
        }
        if (exec_ok(conn, "BEGIN", "begin") != 0 || exec_ok(conn, sql, names[i]) != 0) {
            exec_ok(conn, "ROLLBACK", "rollback");
            rc = -1;
        } else {
            r = PQexecParams(conn, "INSERT INTO schema_migrations (version) VALUES ($1)", 1, NULL, params, NULL, NULL,
                             0);
            PQclear(r);
            if (exec_ok(conn, "COMMIT", "commit") != 0)
                rc = -1;
            else {
                fprintf(stderr, "outdialctl: applied %s\n", names[i]);
                applied++;
            }
        }
        free(sql);
    }
    if (rc == 0 && applied == 0)
        fprintf(stderr, "outdialctl: schema is up to date (%zu migrations)\n", n);
out:
    exec_ok(conn, "SELECT pg_advisory_unlock(7283001)", "unlock");
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
