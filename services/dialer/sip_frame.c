/*
 * Messages on a SIP stream (RFC 3261 18.3): a stream carries messages back
 * to back, each ended by its Content-Length, which is mandatory there.
 * CRLFs between messages are keep-alives (RFC 5626 4.4.1). Pure: no socket,
 * so it is unit-tested (tests/unit/services/dialer/test_sip_frame.c) and
 * fuzzed (fuzz/fuzz_sip.c) on its own.
 */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include <strings.h>

#include "provider.h"

/* The value of Content-Length (or its compact form l) in the header block [p, p + n); -1 if absent or bad. */
static long content_length(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && p[i - 1] != '\n')
            continue;
        size_t k = i;
        if (n - i > 14 && strncasecmp(p + i, "content-length", 14) == 0)
            k = i + 14;
        else if (n - i > 1 && (p[i] == 'l' || p[i] == 'L') && (p[i + 1] == ':' || p[i + 1] == ' ' || p[i + 1] == '\t'))
            k = i + 1;
        else
            continue;
        while (k < n && (p[k] == ' ' || p[k] == '\t'))
            k++;
        if (k >= n || p[k] != ':')
            continue;
        k++;
        while (k < n && (p[k] == ' ' || p[k] == '\t'))
            k++;
        long v = 0;
        size_t d = k;
        while (k < n && p[k] >= '0' && p[k] <= '9' && v <= SIP_TCP_MAX)
            v = v * 10 + (p[k++] - '0');
        return k > d && v <= SIP_TCP_MAX ? v : -1;
    }
    return -1;
}

int provider_sip_frame(const char *p, size_t n, size_t *skip, size_t *len, const char **why)
{
    size_t at = 0;
    while (at < n && (p[at] == '\r' || p[at] == '\n'))
        at++;
    *skip = at;
    *len = 0;
    p += at;
    n -= at;
    const char *end = n >= 4 ? memmem(p, n, "\r\n\r\n", 4) : NULL;
    size_t hlen = end != NULL ? (size_t)(end - p) + 4 : n;
    if (hlen > SIP_TCP_MAX) {
        *why = "a header block over 64 KiB";
        return -1;
    }
    if (end == NULL)
        return 0;
    long clen = content_length(p, hlen);
    if (clen < 0) {
        *why = "a message without a valid Content-Length";
        return -1;
    }
    if (n < hlen + (size_t)clen)
        return 0;
    *len = hlen + (size_t)clen;
    return 1;
}
