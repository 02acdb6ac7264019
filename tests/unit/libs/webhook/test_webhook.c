/* od_webhook: secrets, Standard Webhooks signatures, URL and address rules. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "od/webhook.h"
#include "od_test.h"

static void test_sign(void)
{
    char sig[OD_WEBHOOK_SIG_SIZE];
    /* the Standard Webhooks specification's test vector */
    const char *body = "{\"test\": 2432232314}";
    CHECK(od_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                          strlen(body), sig) == 0);
    CHECK_STR(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    /* the prefix is optional; another id, time or body changes the signature */
    char again[OD_WEBHOOK_SIG_SIZE];
    CHECK(od_webhook_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                          strlen(body), again) == 0);
    CHECK_STR(again, sig);
    CHECK(od_webhook_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body,
                          strlen(body), again) == 0);
    CHECK(strcmp(again, sig) != 0);
    CHECK(od_webhook_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                          strlen(body) - 1, again) == 0);
    CHECK(strcmp(again, sig) != 0);
    /* not base64 */
    CHECK(od_webhook_sign("whsec_abc", "id", 1, "x", 1, sig) == -1);
    CHECK(od_webhook_sign("whsec_", "id", 1, "x", 1, sig) == -1);
    CHECK(od_webhook_sign("whsec_!!!!", "id", 1, "x", 1, sig) == -1);
}

static void test_secret(void)
{
    char a[OD_WEBHOOK_SECRET_LEN + 1], b[OD_WEBHOOK_SECRET_LEN + 1], sig[OD_WEBHOOK_SIG_SIZE];
    od_webhook_secret_new(a);
    od_webhook_secret_new(b);
    CHECK(strlen(a) == OD_WEBHOOK_SECRET_LEN);
    CHECK(strncmp(a, "whsec_", 6) == 0);
    CHECK(a[OD_WEBHOOK_SECRET_LEN - 1] == '=' && a[OD_WEBHOOK_SECRET_LEN - 2] != '=');
    CHECK(strcmp(a, b) != 0);
    CHECK(od_webhook_sign(a, "evt_1", 1, "{}", 2, sig) == 0);
}

static void test_sealed(void)
{
    od_webhook_keys_t k, k2, none;
    const char *why = NULL;
    const char *hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const char *b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="; /* the same 32 bytes */
    char secret[OD_WEBHOOK_SECRET_LEN + 1], sealed[OD_WEBHOOK_SEALED_MAX], again[OD_WEBHOOK_SEALED_MAX];
    char out[OD_WEBHOOK_SECRET_LEN + 1];
    CHECK(od_webhook_keys_init(&k, hex, NULL, &why) == 0);
    CHECK(od_webhook_keys_init(&k2, b64, NULL, &why) == 0);
    CHECK(memcmp(k.key, k2.key, 32) == 0);
    CHECK_STR(k.kid, k2.kid);
    /* wrong sizes and alphabets */
    CHECK(od_webhook_keys_init(&none, "", NULL, &why) == -1 && why != NULL);
    CHECK(od_webhook_keys_init(&none, "00", NULL, &why) == -1);
    CHECK(od_webhook_keys_init(&none, "g00102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", NULL, &why) == -1);
    CHECK(od_webhook_keys_init(&none, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==", NULL, &why) == -1); /* 31 bytes */
    CHECK(od_webhook_keys_init(&none, hex, "nope", &why) == -1);

    od_webhook_secret_new(secret);
    CHECK(od_webhook_secret_seal(&k, secret, sealed) == 0);
    CHECK(strncmp(sealed, "odenc1:", 7) == 0 && strstr(sealed, "whsec_") == NULL);
    CHECK(strlen(sealed) < OD_WEBHOOK_SEALED_MAX);
    CHECK(od_webhook_secret_seal(&k, secret, again) == 0);
    CHECK(strcmp(sealed, again) != 0); /* a fresh nonce each time */
    CHECK(od_webhook_secret_open(&k, sealed, out) == 0);
    CHECK_STR(out, secret);
    /* a plain secret opens as itself, to be sealed again */
    CHECK(od_webhook_secret_open(&k, secret, out) == 1);
    CHECK_STR(out, secret);
    CHECK(od_webhook_secret_open(NULL, secret, out) == 1);
    CHECK(od_webhook_secret_open(NULL, sealed, out) == -1);
    /* another key cannot open it; as the previous key it can (rotation) */
    od_webhook_keys_t rot;
    const char *newkey = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
    CHECK(od_webhook_keys_init(&rot, newkey, NULL, &why) == 0);
    CHECK(od_webhook_secret_open(&rot, sealed, out) == -1);
    CHECK(od_webhook_keys_init(&rot, newkey, hex, &why) == 0);
    CHECK(od_webhook_secret_open(&rot, sealed, out) == 1);
    CHECK_STR(out, secret);
    /* altered: any byte of the ciphertext, or the key id */
    strcpy(again, sealed);
    again[20] = again[20] == 'A' ? 'B' : 'A';
    CHECK(od_webhook_secret_open(&k, again, out) == -1);
    strcpy(again, sealed);
    again[7] = again[7] == '0' ? '1' : '0';
    CHECK(od_webhook_secret_open(&k, again, out) == -1);
    CHECK(od_webhook_secret_open(&k, "odenc1:", out) == -1);
    CHECK(od_webhook_secret_open(&k, "odenc1:00000000:", out) == -1);
    od_webhook_keys_clear(&k);
}

static int url_ok(const char *url, od_webhook_url_t *u)
{
    const char *why = NULL;
    int rc = od_webhook_url_parse(url, strlen(url), u, &why);
    CHECK((rc == 0) == (why == NULL));
    return rc == 0;
}

static void test_url(void)
{
    od_webhook_url_t u;
    CHECK(url_ok("https://Example.COM/hooks?a=1#x", &u));
    CHECK_STR(u.host, "example.com");
    CHECK(u.https == 1 && u.port == 443);
    CHECK(url_ok("http://hooks.example.com:8080", &u));
    CHECK(u.https == 0 && u.port == 8080);
    CHECK(url_ok("HTTP://127.0.0.1:1/x", &u));
    CHECK_STR(u.host, "127.0.0.1");
    CHECK(url_ok("http://[::1]:9000/x", &u));
    CHECK_STR(u.host, "::1");
    CHECK(u.port == 9000);
    CHECK(url_ok("https://[fd00::1]/", &u));

    const char *bad[] = {
        "ftp://example.com/", "example.com/hook", "https://", "https:///x", "https://user:pw@example.com/",
        "https://user@example.com/", "https://exa mple.com/", "https://example.com:0/", "https://example.com:65536/",
        "https://example.com:/", "https://example.com:80a/", "https://[::1/", "https://[::g]/", "https://[::1]x/",
        "https://exa_mple.com/", "https://.example.com/", "https://a..b/", "https://example.com\\@evil.com/",
        "https://ex\xc3\xa4mple.com/", "https://example.com/\n", "https://%65xample.com/",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = NULL;
        int rc = od_webhook_url_parse(bad[i], strlen(bad[i]), &u, &why);
        if (rc != -1 || why == NULL)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK(rc == -1 && why != NULL);
    }
    char big[OD_WEBHOOK_URL_MAX + 2];
    memset(big, 'a', sizeof(big));
    memcpy(big, "https://x.com/", 14);
    CHECK(od_webhook_url_parse(big, OD_WEBHOOK_URL_MAX, &u, NULL) == 0);
    CHECK(od_webhook_url_parse(big, OD_WEBHOOK_URL_MAX + 1, &u, NULL) == -1);
}

static int forbidden(const char *ip)
{
    struct sockaddr_in a4 = {.sin_family = AF_INET};
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, ip, &a4.sin_addr) == 1)
        return od_webhook_addr_forbidden((struct sockaddr *)&a4);
    CHECK(inet_pton(AF_INET6, ip, &a6.sin6_addr) == 1);
    return od_webhook_addr_forbidden((struct sockaddr *)&a6);
}

static void test_addr(void)
{
    const char *deny[] = {
        "0.0.0.0", "10.1.2.3", "100.64.0.1", "100.127.255.255", "127.0.0.1", "127.255.0.9", "169.254.169.254",
        "172.16.0.1", "172.31.255.255", "192.0.0.8", "192.0.2.1", "192.168.1.1", "198.18.0.1", "198.19.255.1",
        "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.1.1.1", "240.0.0.1", "255.255.255.255", "::", "::1",
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::", "fc00::1",
        "fd00:ec2::254", "fe80::1", "fec0::1", "ff02::1", "2001:db8::1", "2001::1", "100::1", "4000::1",
    };
    const char *allow[] = {
        "8.8.8.8", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0",
        "169.253.1.1", "192.169.0.1", "198.20.0.1", "223.255.255.255", "1.1.1.1", "::ffff:8.8.8.8",
        "64:ff9b::808:808", "2002:808:808::", "2606:4700:4700::1111", "2a00:1450:4001::1",
    };
    for (size_t i = 0; i < sizeof(deny) / sizeof(deny[0]); i++) {
        if (!forbidden(deny[i]))
            fprintf(stderr, "allowed: %s\n", deny[i]);
        CHECK(forbidden(deny[i]));
    }
    for (size_t i = 0; i < sizeof(allow) / sizeof(allow[0]); i++) {
        if (forbidden(allow[i]))
            fprintf(stderr, "refused: %s\n", allow[i]);
        CHECK(!forbidden(allow[i]));
    }
    struct sockaddr un = {.sa_family = AF_UNIX};
    CHECK(od_webhook_addr_forbidden(&un));
    CHECK(od_webhook_addr_forbidden(NULL));
}

int main(void)
{
    test_sealed();
    test_sign();
    test_secret();
    test_url();
    test_addr();
    return od_test_result("test_webhook");
}
