/*
 * UTF-8 well-formedness (Unicode 15, table 3-7), NUL refused: the one check
 * of every text that comes from outside (CSV, query strings, form fields)
 * before it reaches jansson, whose json_string and json_pack return NULL on
 * invalid UTF-8.
 */
#include "od/utf8.h"

#include <stdint.h>
#include <string.h>

#define ONES UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

size_t od_utf8_invalid_at(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        /* ASCII without NUL, 8 bytes at a time: no byte has its high bit set
         * and, then exactly, none is zero. Most input is all this. */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (((w & HIGHS) | ((w - ONES) & ~w & HIGHS)) != 0)
                break;
            i += 8;
        }
        if (i == len)
            break;
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c == 0)
                return i;
            i++;
            continue;
        }
        size_t n;                           /* continuation bytes */
        unsigned char lo = 0x80, hi = 0xBF; /* range of the first one */
        if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong below U+0800 */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates U+D800–U+DFFF */
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong below U+10000 */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return i; /* continuation byte, C0/C1 overlong lead, F5–FF */
        }
        if (len - i <= n || s[i + 1] < lo || s[i + 1] > hi)
            return i;
        for (size_t k = 2; k <= n; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
        i += n + 1;
    }
    return len;
}

int od_utf8_check(const char *s, size_t len)
{
    return od_utf8_invalid_at((const unsigned char *)s, len) == len ? 0 : -1;
}

size_t od_utf8_cut(const char *s, size_t len, size_t max)
{
    return od_utf8_invalid_at((const unsigned char *)s, len < max ? len : max);
}
