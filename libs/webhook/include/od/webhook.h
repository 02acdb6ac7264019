/*
 * Webhooks (docs/webhooks.md): endpoint secrets, Standard Webhooks
 * signatures, and which URLs and addresses a webhook may reach.
 */
#ifndef OD_WEBHOOK_H
#define OD_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define OD_WEBHOOK_SECRET_LEN 50  /* "whsec_" + base64 of 32 bytes (44) */
#define OD_WEBHOOK_SIG_SIZE 48    /* "v1," + base64 of a SHA-256 (44) + NUL */
#define OD_WEBHOOK_URL_MAX 2048

/** A new endpoint secret, "whsec_" + base64 of 32 random bytes. */
void od_webhook_secret_new(char out[OD_WEBHOOK_SECRET_LEN + 1]);

/**
 * The Standard Webhooks signature "v1,<base64 HMAC-SHA256>" of
 * "<id>.<ts>.<body>", keyed with the base64-decoded part of `secret` after
 * "whsec_" (the prefix is optional). 0, or -1 if the secret is not base64.
 */
int od_webhook_sign(const char *secret, const char *id, int64_t ts, const char *body, size_t len,
                    char out[OD_WEBHOOK_SIG_SIZE]);

/** The parts of a webhook URL that matter for where it goes. */
typedef struct od_webhook_url {
    int https;
    char host[256]; /**< a name, or an IP literal (IPv6 without its brackets) */
    unsigned port;  /**< explicit, or 80 / 443 */
} od_webhook_url_t;

/**
 * Checks the form of a webhook URL: http or https, printable ASCII only,
 * at most OD_WEBHOOK_URL_MAX bytes, no user name or password, a host name
 * (letters, digits, '-', '.') or an IP literal, an optional port 1..65535.
 * 0 and *out filled, or -1 with *why (a sentence for the error).
 */
int od_webhook_url_parse(const char *url, size_t len, od_webhook_url_t *out, const char **why);

/**
 * 1 if a webhook must not connect to this address: unspecified, loopback,
 * private (RFC 1918, unique local), carrier-grade NAT, link-local (cloud
 * metadata included), multicast, broadcast, documentation, benchmarking and
 * other reserved ranges; IPv4 embedded in IPv6 (mapped, NAT64, 6to4) is
 * judged as IPv4. 0 for a public unicast address. Families other than
 * AF_INET and AF_INET6 are forbidden.
 */
int od_webhook_addr_forbidden(const struct sockaddr *sa);

#endif
