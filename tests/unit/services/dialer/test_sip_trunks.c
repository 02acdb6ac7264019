/* The sip provider's trunks file (services/dialer/sip_trunks.c): reading, its checks and the choice of a trunk. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "od/core.h"
#include "od_test.h"
#include "provider.h"

static char path[] = "/tmp/test_sip_trunks.XXXXXX";

/* Loads `json` from the temporary file; the error line into err. */
static int load(const char *json, provider_sip_trunk_t **t, size_t *n, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    err[0] = '\0';
    return provider_sip_trunks_load(path, t, n, err, errlen);
}

static void test_good_file(void)
{
    char err[512];
    provider_sip_trunk_t *t = NULL;
    size_t n = 0;
    setenv("TEST_TRUNK_PW", "pw-env", 1);
    int rc = load("{\"trunks\": ["
                  " {\"name\": \"b\", \"address\": \"127.0.0.1:5071\", \"transport\": \"udp\", \"username\": \"ub\","
                  "  \"password_env\": \"TEST_TRUNK_PW\", \"realm\": \"r\", \"cps\": 2.5, \"max_concurrent\": 3,"
                  "  \"projects\": [\"0189ABCD-0000-7000-8000-000000000001\"]},"
                  " {\"name\": \"c\", \"address\": \"10.0.0.1\", \"transport\": \"tcp\", \"caller_ids\": [\"+14155550100\"],"
                  "  \"projects\": [\"01890000-0000-7000-8000-000000000002\"]}"
                  "]}",
                  &t, &n, err, sizeof(err));
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK(n == 2 && t[0].tcp == 0 && t[1].tcp == 1);
    CHECK(n == 2);
    CHECK_STR(t[0].name, "b");
    CHECK_STR(t[0].address, "127.0.0.1:5071");
    CHECK_STR(t[0].username, "ub");
    CHECK_STR(t[0].password, "pw-env");
    CHECK_STR(t[0].realm, "r");
    CHECK(t[0].cps == 2.5 && t[0].max_concurrent == 3);
    CHECK(t[0].nprojects == 1 && t[0].ncaller_ids == 0);
    CHECK_STR(t[0].projects[0], "0189abcd-0000-7000-8000-000000000001"); /* lower case, as claims carry it */
    CHECK_STR(t[1].password, "");                                        /* no username: no password needed */
    CHECK(t[1].cps == 10 && t[1].max_concurrent == 100);                 /* the defaults */

    /* the choice: caller ID, then project, else -1 (the default trunk) */
    CHECK(provider_sip_trunk_select(t, n, "0189abcd-0000-7000-8000-000000000001", NULL) == 0);
    CHECK(provider_sip_trunk_select(t, n, "0189abcd-0000-7000-8000-000000000001", "+14155550100") == 1);
    CHECK(provider_sip_trunk_select(t, n, "01890000-0000-7000-8000-000000000002", "+14155550199") == 1);
    CHECK(provider_sip_trunk_select(t, n, "01890000-0000-7000-8000-000000000009", "+14155550199") == -1);
    CHECK(provider_sip_trunk_select(t, n, NULL, NULL) == -1);
    CHECK(provider_sip_trunk_select(t, n, "", "") == -1);
    provider_sip_trunks_free(t, n);
}

static void test_password_file(void)
{
    char err[512], pwpath[] = "/tmp/test_sip_trunks_pw.XXXXXX", json[512];
    int fd = mkstemp(pwpath);
    CHECK(write(fd, "from-file\r\nsecond line\n", 23) == 23);
    close(fd);
    snprintf(json, sizeof(json),
             "{\"trunks\": [{\"name\": \"f\", \"address\": \"[::1]:5060\", \"username\": \"u\", \"password_file\": "
             "\"%s\", \"caller_ids\": [\"+14155550100\"]}]}",
             pwpath);
    provider_sip_trunk_t *t = NULL;
    size_t n = 0;
    CHECK(load(json, &t, &n, err, sizeof(err)) == 0);
    if (n == 1)
        CHECK_STR(t[0].password, "from-file");
    provider_sip_trunks_free(t, n);
    unlink(pwpath);
}

/* Each bad file fails with one line that holds `want` and never the password. */
static void bad(const char *json, const char *want)
{
    char err[512];
    provider_sip_trunk_t *t = (provider_sip_trunk_t *)1;
    size_t n = 7;
    int rc = load(json, &t, &n, err, sizeof(err));
    CHECK(rc == -1);
    CHECK(t == NULL && n == 0);
    CHECK(strstr(err, want) != NULL);
    CHECK(strstr(err, "pw-env") == NULL && strstr(err, "s3cret") == NULL);
    CHECK(strchr(err, '\n') == NULL);
    if (rc != -1 || strstr(err, want) == NULL)
        fprintf(stderr, "  for %s\n  got \"%s\", want \"%s\"\n", json, err, want);
}

#define T(extra) "{\"name\": \"b\", \"address\": \"127.0.0.1:5071\", \"projects\": [\"01890000-0000-7000-8000-000000000001\"]" extra "}"

static void test_bad_files(void)
{
    bad("", "not JSON at line");
    bad("[]", "must be an object {\"trunks\": [...]}");
    bad("{\"trunks\": [], \"x\": 1}", "must be an object {\"trunks\": [...]}");
    bad("{\"trunks\": [1]}", "trunk \"#1\": must be an object");
    bad("{\"trunks\": [{\"address\": \"127.0.0.1\"}]}", "trunk \"#1\": name must be a string");
    bad("{\"trunks\": [" T(", \"name\": \"default\"") "]}", "duplicate object key"); /* jansson: a key twice */
    bad("{\"trunks\": [{\"name\": \"default\", \"address\": \"127.0.0.1\", \"projects\": []}]}",
        "the name \"default\" is the OUTDIAL_SIP_TRUNK trunk's");
    bad("{\"trunks\": [{\"name\": \"a b\"}]}", "name may hold only");
    bad("{\"trunks\": [" T(", \"password\": \"s3cret\"") "]}", "trunk \"b\": unknown key \"password\"");
    bad("{\"trunks\": [{\"name\": \"b\", \"projects\": [\"01890000-0000-7000-8000-000000000001\"]}]}",
        "address is missing");
    bad("{\"trunks\": [{\"name\": \"b\", \"address\": \"sip.example.com:5060\"}]}", "is not an IP address and port");
    bad("{\"trunks\": [{\"name\": \"b\", \"address\": \"127.0.0.1:\"}]}", "is not an IP address and port");
    bad("{\"trunks\": [" T(", \"transport\": \"tls\"") "]}", "transport \"tls\" is not udp or tcp");
    bad("{\"trunks\": [" T(", \"username\": \"u\"") "]}", "username \"u\" has no password");
    bad("{\"trunks\": [" T(", \"username\": \"u\", \"password_env\": \"TEST_TRUNK_UNSET\"") "]}",
        "the environment variable TEST_TRUNK_UNSET is not set");
    bad("{\"trunks\": [" T(", \"username\": \"u\", \"password_file\": \"/nonexistent/x\"") "]}",
        "password_file /nonexistent/x: No such file");
    bad("{\"trunks\": [" T(", \"password_env\": \"TEST_TRUNK_PW\", \"password_file\": \"/x\"") "]}", "both given");
    bad("{\"trunks\": [" T(", \"cps\": 0") "]}", "cps must be a number from 0.01");
    bad("{\"trunks\": [" T(", \"max_concurrent\": 1.5") "]}", "max_concurrent must be an integer");
    bad("{\"trunks\": [{\"name\": \"b\", \"address\": \"127.0.0.1\"}]}", "selects no call");
    bad("{\"trunks\": [{\"name\": \"b\", \"address\": \"127.0.0.1\", \"projects\": [\"x\"]}]}",
        "projects[0] is not a project UUID");
    bad("{\"trunks\": [{\"name\": \"b\", \"address\": \"127.0.0.1\", \"caller_ids\": [\"12345\"]}]}",
        "caller_ids[0] is not an E.164 number");
    bad("{\"trunks\": [" T("") ", " T("") "]}", "trunk \"b\": the name is used by two trunks");
    bad("{\"trunks\": [" T("") ", {\"name\": \"c\", \"address\": \"127.0.0.1\", \"projects\": "
        "[\"01890000-0000-7000-8000-000000000001\"]}]}",
        "trunk \"c\": project 01890000-0000-7000-8000-000000000001 is claimed by trunk \"b\" too");
    bad("{\"trunks\": [{\"name\": \"b\", \"address\": \"127.0.0.1\", \"caller_ids\": [\"+14155550100\", "
        "\"+14155550100\"]}]}",
        "caller ID +14155550100 is listed twice");
}

int main(void)
{
    int fd = mkstemp(path);
    close(fd);
    test_good_file();
    test_password_file();
    test_bad_files();
    unlink(path);
    return od_test_result("dialer_sip_trunks");
}
