/*
 * UTF-8 checks of outside text. Pure functions.
 */
#ifndef OD_UTF8_H
#define OD_UTF8_H

#include <stddef.h>

/**
 * Offset of the first byte of the first invalid sequence in `s` (length
 * `len`), or `len` if the whole input is well-formed UTF-8 (Unicode 15,
 * table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF).
 * NUL is refused on top of it, so valid text is also a C string.
 */
size_t od_utf8_invalid_at(const unsigned char *s, size_t len);

/** 0 if `s` (length `len`) is well-formed UTF-8 without NUL, else -1. */
int od_utf8_check(const char *s, size_t len);

/**
 * How many of the `len` bytes at s to keep to show at most `max` of them as
 * valid UTF-8: the longest well-formed prefix (no NUL), never cutting a
 * sequence in two. For "%.*s" of outside text, or of jansson's error text
 * (which quotes the input), in a message that goes into JSON.
 */
size_t od_utf8_cut(const char *s, size_t len, size_t max);

#endif
