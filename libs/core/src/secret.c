#include "od/secret.h"

#include <openssl/evp.h>
#include <string.h>

#include "od/core.h"

void od_api_key_new(char out[OD_API_KEY_LEN + 1])
{
    static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char r[64];
    size_t n = 0;
    out[0] = 'o', out[1] = 'd', out[2] = 'k', out[3] = '_';
    /* rejection sampling keeps every character uniform over the 62 */
    while (n < OD_API_KEY_LEN - 4) {
        od_random_bytes(r, sizeof(r));
        for (size_t i = 0; i < sizeof(r) && n < OD_API_KEY_LEN - 4; i++)
            if (r[i] < 248)
                out[4 + n++] = b62[r[i] % 62];
    }
    out[OD_API_KEY_LEN] = '\0';
}

void od_api_key_hash(const char *key, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(key, len, md, &mdlen, EVP_sha256(), NULL);
    od_hex(md, sizeof(md), out);
}

void od_api_key_issue(od_api_key_issued_t *out)
{
    od_api_key_new(out->key);
    od_api_key_hash(out->key, OD_API_KEY_LEN, out->hash);
    memcpy(out->prefix, out->key, sizeof(out->prefix) - 1);
    out->prefix[sizeof(out->prefix) - 1] = '\0';
}
