#include "od/webhook.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "od/buf.h"
#include "od/core.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_BYTES 32

void od_webhook_secret_new(char out[OD_WEBHOOK_SECRET_LEN + 1])
{
    unsigned char raw[SECRET_BYTES];
    od_random_bytes(raw, sizeof(raw));
    memcpy(out, SECRET_PREFIX, 6);
    EVP_EncodeBlock((unsigned char *)out + 6, raw, sizeof(raw)); /* writes 44 characters and a NUL */
    OPENSSL_cleanse(raw, sizeof(raw));
}

static int fail_why(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return -1;
}

/* base64 into key: its length, or -1. EVP_DecodeBlock ignores nothing and
 * counts padding as zero bytes, which are taken off here. */
static int decode_key(const char *b64, unsigned char *key, size_t size)
{
    size_t n = strlen(b64);
    if (n == 0 || n % 4 != 0 || n / 4 * 3 > size)
        return -1;
    int len = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)n);
    if (len < 0)
        return -1;
    if (b64[n - 1] == '=')
        len--;
    if (b64[n - 2] == '=')
        len--;
    return len;
}

int od_webhook_sign(const char *secret, const char *id, int64_t ts, const char *body, size_t len,
                    char out[OD_WEBHOOK_SIG_SIZE])
{
    unsigned char key[96], mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (strncmp(secret, SECRET_PREFIX, 6) == 0)
        secret += 6;
    int keylen = decode_key(secret, key, sizeof(key));
    if (keylen <= 0)
        return -1;
    od_buf_t msg = OD_BUF_INIT;
    od_buf_printf(&msg, "%s.%lld.", id, (long long)ts);
    od_buf_append(&msg, body, len);
    unsigned char *r = HMAC(EVP_sha256(), key, keylen, (const unsigned char *)msg.base, msg.len, mac, &maclen);
    od_buf_free(&msg);
    OPENSSL_cleanse(key, sizeof(key));
    if (r == NULL || maclen != 32)
        return -1;
    memcpy(out, "v1,", 3);
    EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)maclen);
    return 0;
}

/* ---- secrets at rest ---- */

#define NONCE_BYTES 12
#define TAG_BYTES 16
#define AAD "outdial webhook secret"

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* 32 bytes from 64 hex digits or 44 base64 characters: 0, or -1 */
static int parse_key(const char *in, unsigned char key[32], char kid[9])
{
    size_t n = strlen(in);
    if (n == 64) {
        for (size_t i = 0; i < 32; i++) {
            int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
            if (hi < 0 || lo < 0)
                return -1;
            key[i] = (unsigned char)(hi << 4 | lo);
        }
    } else {
        unsigned char tmp[33]; /* EVP_DecodeBlock writes the padding's zero byte too */
        int len = n == 44 ? decode_key(in, tmp, sizeof(tmp)) : -1;
        if (len == 32)
            memcpy(key, tmp, 32);
        OPENSSL_cleanse(tmp, sizeof(tmp));
        if (len != 32)
            return -1;
    }
    unsigned char h[32];
    unsigned int hl = 0;
    if (EVP_Digest(key, 32, h, &hl, EVP_sha256(), NULL) != 1)
        return -1;
    snprintf(kid, 9, "%02x%02x%02x%02x", h[0], h[1], h[2], h[3]);
    return 0;
}

int od_webhook_keys_init(od_webhook_keys_t *k, const char *key, const char *prev, const char **why)
{
    memset(k, 0, sizeof(*k));
    if (key == NULL || key[0] == '\0')
        return fail_why(why, "OUTDIAL_SECRET_KEY is not set");
    if (parse_key(key, k->key, k->kid) != 0)
        return od_webhook_keys_clear(k), fail_why(why, "OUTDIAL_SECRET_KEY must be 32 bytes: 64 hex digits or 44 base64 characters");
    if (prev != NULL && prev[0] != '\0') {
        if (parse_key(prev, k->prev, k->prev_kid) != 0)
            return od_webhook_keys_clear(k),
                   fail_why(why, "OUTDIAL_SECRET_KEY_PREVIOUS must be 32 bytes: 64 hex digits or 44 base64 characters");
        k->has_prev = 1;
    }
    return 0;
}

void od_webhook_keys_clear(od_webhook_keys_t *k)
{
    OPENSSL_cleanse(k, sizeof(*k));
}

/* AES-256-GCM one shot: enc 1 seals in into out (+ tag), enc 0 opens (checks tag). 0, or -1. */
static int gcm(int enc, const unsigned char key[32], const unsigned char nonce[NONCE_BYTES], const unsigned char *in,
               int len, unsigned char *out, unsigned char tag[TAG_BYTES])
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, f = 0, ok = c != NULL && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) == 1 &&
                          EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_BYTES, NULL) == 1 &&
                          EVP_CipherInit_ex(c, NULL, NULL, key, nonce, enc) == 1 &&
                          EVP_CipherUpdate(c, NULL, &n, (const unsigned char *)AAD, (int)strlen(AAD)) == 1 &&
                          EVP_CipherUpdate(c, out, &n, in, len) == 1 && n == len &&
                          (enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_BYTES, tag) == 1) &&
                          EVP_CipherFinal_ex(c, out + n, &f) == 1 && f == 0 &&
                          (!enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, tag) == 1);
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

int od_webhook_secret_seal(const od_webhook_keys_t *k, const char *plain, char out[OD_WEBHOOK_SEALED_MAX])
{
    unsigned char raw[NONCE_BYTES + OD_WEBHOOK_SECRET_LEN + TAG_BYTES];
    size_t len = strlen(plain);
    if (len > OD_WEBHOOK_SECRET_LEN)
        return -1;
    od_random_bytes(raw, NONCE_BYTES);
    if (gcm(1, k->key, raw, (const unsigned char *)plain, (int)len, raw + NONCE_BYTES, raw + NONCE_BYTES + len) != 0)
        return -1;
    int n = snprintf(out, OD_WEBHOOK_SEALED_MAX, OD_WEBHOOK_SEALED_PREFIX "%s:", k->kid);
    EVP_EncodeBlock((unsigned char *)out + n, raw, (int)(NONCE_BYTES + len + TAG_BYTES));
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

int od_webhook_secret_open(const od_webhook_keys_t *k, const char *stored, char out[OD_WEBHOOK_SECRET_LEN + 1])
{
    size_t plen = strlen(OD_WEBHOOK_SEALED_PREFIX);
    if (strncmp(stored, OD_WEBHOOK_SEALED_PREFIX, plen) != 0) { /* a row written before encryption */
        if (strlen(stored) > OD_WEBHOOK_SECRET_LEN)
            return -1;
        strcpy(out, stored);
        return 1;
    }
    const char *kid = stored + plen, *b64 = kid + 9;
    if (k == NULL || strlen(kid) < 10 || kid[8] != ':')
        return -1;
    const unsigned char *key;
    if (strncmp(kid, k->kid, 8) == 0)
        key = k->key;
    else if (k->has_prev && strncmp(kid, k->prev_kid, 8) == 0)
        key = k->prev;
    else
        return -1;
    unsigned char raw[NONCE_BYTES + OD_WEBHOOK_SECRET_LEN + TAG_BYTES + 3];
    int n = decode_key(b64, raw, sizeof(raw));
    if (n < NONCE_BYTES + TAG_BYTES + 1 || n > NONCE_BYTES + OD_WEBHOOK_SECRET_LEN + TAG_BYTES)
        return -1;
    int len = n - NONCE_BYTES - TAG_BYTES;
    int rc = gcm(0, key, raw, raw + NONCE_BYTES, len, (unsigned char *)out, raw + NONCE_BYTES + len);
    OPENSSL_cleanse(raw, sizeof(raw));
    if (rc != 0 || memchr(out, '\0', (size_t)len) != NULL) {
        OPENSSL_cleanse(out, OD_WEBHOOK_SECRET_LEN + 1);
        return -1;
    }
    out[len] = '\0';
    return key == k->key ? 0 : 1;
}

/* ---- URLs ---- */

static int fail(const char **why, const char *msg)
{
    if (why != NULL)
        *why = msg;
    return -1;
}

int od_webhook_url_parse(const char *url, size_t len, od_webhook_url_t *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    if (len > OD_WEBHOOK_URL_MAX)
        return fail(why, "url must be at most 2048 characters");
    for (size_t i = 0; i < len; i++)
        if (url[i] <= 0x20 || url[i] >= 0x7f || url[i] == '\\')
            return fail(why, "url must be printable ASCII without spaces or backslashes (percent-encode the rest)");
    const char *p = url, *end = url + len;
    if (len >= 8 && strncasecmp(p, "https://", 8) == 0) {
        out->https = 1;
        out->port = 443;
        p += 8;
    } else if (len >= 7 && strncasecmp(p, "http://", 7) == 0) {
        out->port = 80;
        p += 7;
    } else {
        return fail(why, "url must start with https:// or http://");
    }
    /* the authority ends at the first '/', '?' or '#' */
    const char *auth_end = p;
    while (auth_end < end && *auth_end != '/' && *auth_end != '?' && *auth_end != '#')
        auth_end++;
    if (memchr(p, '@', (size_t)(auth_end - p)) != NULL)
        return fail(why, "url must not hold a user name or password");
    const char *host = p, *host_end, *port = NULL;
    if (p < auth_end && *p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (host_end == NULL)
            return fail(why, "url has an unclosed IPv6 literal");
        if (host_end + 1 < auth_end) {
            if (host_end[1] != ':')
                return fail(why, "url has characters after its IPv6 literal");
            port = host_end + 2;
        }
    } else {
        host_end = p;
        while (host_end < auth_end && *host_end != ':')
            host_end++;
        if (host_end < auth_end)
            port = host_end + 1;
    }
    size_t hlen = (size_t)(host_end - host);
    if (hlen == 0)
        return fail(why, "url has no host");
    if (hlen >= sizeof(out->host))
        return fail(why, "url's host is too long");
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (host > p) { /* [IPv6] */
        struct in6_addr a6;
        if (inet_pton(AF_INET6, out->host, &a6) != 1)
            return fail(why, "url has an invalid IPv6 literal");
    } else {
        for (size_t i = 0; i < hlen; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '.'))
                return fail(why, "url's host must be a name (letters, digits, '-', '.') or an IP address");
            if (c >= 'A' && c <= 'Z')
                out->host[i] = (char)(c - 'A' + 'a');
        }
        if (out->host[0] == '.' || out->host[0] == '-' || strstr(out->host, "..") != NULL)
            return fail(why, "url's host is not a valid name");
    }
    if (port != NULL) {
        unsigned long v = 0;
        if (port == auth_end || auth_end - port > 5)
            return fail(why, "url's port must be from 1 to 65535");
        for (const char *q = port; q < auth_end; q++) {
            if (*q < '0' || *q > '9')
                return fail(why, "url's port must be from 1 to 65535");
            v = v * 10 + (unsigned long)(*q - '0');
        }
        if (v < 1 || v > 65535)
            return fail(why, "url's port must be from 1 to 65535");
        out->port = (unsigned)v;
    }
    return 0;
}

/* ---- addresses ---- */

static int v4_forbidden(uint32_t a) /* host order */
{
    static const struct {
        uint32_t net;
        int bits;
    } deny[] = {
        {0x00000000, 8},  /* 0.0.0.0/8 "this network" */
        {0x0A000000, 8},  /* 10/8 private */
        {0x64400000, 10}, /* 100.64/10 carrier-grade NAT */
        {0x7F000000, 8},  /* 127/8 loopback */
        {0xA9FE0000, 16}, /* 169.254/16 link-local, cloud metadata */
        {0xAC100000, 12}, /* 172.16/12 private */
        {0xC0000000, 24}, /* 192.0.0/24 IETF protocol assignments */
        {0xC0000200, 24}, /* 192.0.2/24 documentation */
        {0xC0586300, 24}, /* 192.88.99/24 6to4 relay */
        {0xC0A80000, 16}, /* 192.168/16 private */
        {0xC6120000, 15}, /* 198.18/15 benchmarking */
        {0xC6336400, 24}, /* 198.51.100/24 documentation */
        {0xCB007100, 24}, /* 203.0.113/24 documentation */
        {0xE0000000, 4},  /* 224/4 multicast */
        {0xF0000000, 4},  /* 240/4 reserved, broadcast */
    };
    for (size_t i = 0; i < OD_ARRAY_SIZE(deny); i++) {
        uint32_t mask = 0xFFFFFFFFu << (32 - deny[i].bits);
        if ((a & mask) == deny[i].net)
            return 1;
    }
    return 0;
}

static uint32_t v4_at(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int v6_forbidden(const uint8_t b[16])
{
    static const uint8_t zero[12] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return v4_forbidden(v4_at(b + 12));
    if (memcmp(b, zero, 12) == 0) /* ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d */
        return 1;
    if (b[0] == 0x20 && b[1] == 0x02) /* 2002::/16 6to4: the IPv4 address follows */
        return v4_forbidden(v4_at(b + 2));
    if ((b[0] & 0xfe) == 0xfc) /* fc00::/7 unique local */
        return 1;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 link-local */
        return 1;
    if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) /* fec0::/10 site-local (deprecated) */
        return 1;
    if (b[0] == 0xff) /* ff00::/8 multicast */
        return 1;
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8) /* 2001:db8::/32 documentation */
        return 1;
    if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x00 && b[3] == 0x00) /* 2001::/32 Teredo */
        return 1;
    if (b[0] == 0x01 && b[1] == 0x00 && memcmp(b + 2, zero, 6) == 0) /* 100::/64 discard */
        return 1;
    if ((b[0] & 0xe0) != 0x20) /* outside 2000::/3, the global unicast space */
        return 1;
    return 0;
}

int od_webhook_addr_forbidden(const struct sockaddr *sa)
{
    if (sa == NULL)
        return 1;
    if (sa->sa_family == AF_INET)
        return v4_forbidden(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family == AF_INET6)
        return v6_forbidden(((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr);
    return 1;
}
