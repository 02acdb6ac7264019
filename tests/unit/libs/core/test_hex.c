/* Hex encoding (od_hex, od_random_hex) and the API key hash built on it. */
#include <string.h>

#include "od/core.h"
#include "od/secret.h"
#include "od_test.h"

int main(void)
{
    char out[129];
    const unsigned char b[] = {0x00, 0x0f, 0xa5, 0xff};
    od_hex(b, sizeof(b), out);
    CHECK_STR(out, "000fa5ff");
    od_hex(b, 0, out);
    CHECK_STR(out, "");

    /* SHA-256("abc"), FIPS 180-2 */
    od_api_key_hash("abc", 3, out);
    CHECK_STR(out, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");

    char a[65], z[65];
    od_random_hex(a, 32);
    od_random_hex(z, 32);
    CHECK(strlen(a) == 64 && strspn(a, "0123456789abcdef") == 64);
    CHECK(strcmp(a, z) != 0);
    memset(out, 'x', sizeof(out));
    od_random_hex(out, 100); /* at most 64 bytes */
    CHECK(strlen(out) == 128);
    return od_test_result("core_hex");
}
