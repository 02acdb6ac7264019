/*
 * Webhooks (docs/webhooks.md): endpoint secrets, their encryption at rest,
 * Standard Webhooks signatures, and which URLs and addresses a webhook may
 * reach.
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

/* ---- secrets at rest ----
 *
 * An endpoint's secret is stored sealed with the operator's key
 * (OUTDIAL_SECRET_KEY): AES-256-GCM with a random 96-bit nonce, as
 *
 *   "odenc1:" <key id: 8 hex digits> ":" base64(nonce[12] ciphertext tag[16])
 *
 * The key id (the first 4 bytes of the SHA-256 of the key) says which key
 * opens it, so that a key can be rotated: the new key seals, the previous
 * one (OUTDIAL_SECRET_KEY_PREVIOUS) still opens until `outdialctl migrate`
 * has sealed every row again. A stored value without the prefix is a plain
 * secret of a row written before encryption; it opens as itself.
 */

#define OD_WEBHOOK_SEALED_PREFIX "odenc1:"
#define OD_WEBHOOK_SEALED_MAX 160 /* sealed form of a secret up to OD_WEBHOOK_SECRET_LEN, NUL included */

/** The keys a process seals and opens secrets with. */
typedef struct od_webhook_keys {
    unsigned char key[32];  /**< seals and opens */
    char kid[9];            /**< its id, 8 hex digits */
    int has_prev;           /**< 1 if prev is set */
    unsigned char prev[32]; /**< opens only (a rotation under way) */
    char prev_kid[9];
} od_webhook_keys_t;

/**
 * Reads the keys: `key` and `prev` (NULL or "": none) are 32 bytes each, as
 * 64 hex digits or standard base64 (44 characters). 0, or -1 with *why (a
 * sentence naming OUTDIAL_SECRET_KEY or OUTDIAL_SECRET_KEY_PREVIOUS).
 */
int od_webhook_keys_init(od_webhook_keys_t *k, const char *key, const char *prev, const char **why);

/** Wipes the keys from memory. */
void od_webhook_keys_clear(od_webhook_keys_t *k);

/** Seals `plain` (at most OD_WEBHOOK_SECRET_LEN bytes) with k->key into out. 0, or -1. */
int od_webhook_secret_seal(const od_webhook_keys_t *k, const char *plain, char out[OD_WEBHOOK_SEALED_MAX]);

/**
 * Opens a stored secret into out (at most OD_WEBHOOK_SECRET_LEN bytes + NUL):
 * a sealed one with the key its id names (k may be NULL: no key), a plain
 * one (no "odenc1:" prefix) as it is. 0 if sealed with k->key, 1 if sealed
 * with k->prev or plain (seal it again), -1 if it cannot be opened (no such
 * key, or altered).
 */
int od_webhook_secret_open(const od_webhook_keys_t *k, const char *stored, char out[OD_WEBHOOK_SECRET_LEN + 1]);

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
