#include "od/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "od/core.h"
#include <stdlib.h>

void od_buf_reserve(od_buf_t *b, size_t extra)
{
    if (b->len + extra + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->base = od_realloc(b->base, cap);
    b->cap = cap;
}

void od_buf_append(od_buf_t *b, const void *p, size_t len)
{
    od_buf_reserve(b, len);
    memcpy(b->base + b->len, p, len);
    b->len += len;
    b->base[b->len] = '\0';
}

void od_buf_puts(od_buf_t *b, const char *s)
{
    od_buf_append(b, s, strlen(s));
}

void od_buf_printf(od_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    od_buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void od_buf_json_str(od_buf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    od_buf_reserve(b, len + 2);
    od_buf_append(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        od_buf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': od_buf_append(b, "\\\"", 2); break;
        case '\\': od_buf_append(b, "\\\\", 2); break;
        case '\n': od_buf_append(b, "\\n", 2); break;
        case '\r': od_buf_append(b, "\\r", 2); break;
        case '\t': od_buf_append(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            od_buf_append(b, u, 6);
        }
        }
    }
    od_buf_append(b, s + run, len - run);
    od_buf_append(b, "\"", 1);
}

void od_buf_reset(od_buf_t *b)
{
    b->len = 0;
    if (b->base)
        b->base[0] = '\0';
}

void od_buf_free(od_buf_t *b)
{
    free(b->base);
    b->base = NULL;
    b->len = b->cap = 0;
}
