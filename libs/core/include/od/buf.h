/*
 * A growable byte buffer, always NUL-terminated, for building responses,
 * messages and metrics text.
 */
#ifndef OD_BUF_H
#define OD_BUF_H

#include <stddef.h>

typedef struct od_buf {
    char *base; /**< heap storage (NULL until the first append) */
    size_t len; /**< bytes used, not counting the terminating NUL */
    size_t cap; /**< bytes allocated */
} od_buf_t;

#define OD_BUF_INIT {NULL, 0, 0}

/** Ensures room for `extra` more bytes plus the NUL. */
void od_buf_reserve(od_buf_t *b, size_t extra);
/** Appends `len` bytes. */
void od_buf_append(od_buf_t *b, const void *p, size_t len);
/** Appends a NUL-terminated string. */
void od_buf_puts(od_buf_t *b, const char *s);
/** Appends printf-style. */
void od_buf_printf(od_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Appends `s` as a JSON string literal, quotes included. */
void od_buf_json_str(od_buf_t *b, const char *s, size_t len);
/** Empties the buffer but keeps its storage. */
void od_buf_reset(od_buf_t *b);
/** Frees the storage. */
void od_buf_free(od_buf_t *b);

#endif
