/*
 * API keys: generation and hashing. Only the SHA-256 of a key is stored;
 * the key itself is shown once, at creation.
 * Format: "odk_" + 40 base62 characters (238 bits of randomness).
 */
#ifndef OD_SECRET_H
#define OD_SECRET_H

#include <stddef.h>

#define OD_API_KEY_LEN 44 /* "odk_" + 40 */

/** Writes a new random API key (NUL-terminated) into `out`. */
void od_api_key_new(char out[OD_API_KEY_LEN + 1]);
/** Hex SHA-256 of `key` (64 chars + NUL). */
void od_api_key_hash(const char *key, size_t len, char out[65]);

/** A new key with what is stored of it: the hash and the prefix shown in lists. */
typedef struct od_api_key_issued {
    char key[OD_API_KEY_LEN + 1]; /**< shown once, never stored */
    char hash[65];                /**< stored */
    char prefix[13];              /**< stored: "odk_" and the first 8 random characters */
} od_api_key_issued_t;

/** Issues a new key (od_api_key_new + od_api_key_hash + prefix). */
void od_api_key_issue(od_api_key_issued_t *out);

#endif
