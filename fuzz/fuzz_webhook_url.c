/*
 * libFuzzer target for od_webhook_url_parse (libs/webhook), the check of a
 * webhook URL a customer gives. Properties beyond "no crash, no sanitizer
 * report":
 *  - accepted: the host is non-empty, NUL-terminated inside its buffer, lower
 *    case, and either a name of [a-z0-9.-] or an IPv6 literal; the port is
 *    1..65535; the input was http(s), printable ASCII, at most 2048 bytes,
 *    with no '@' in its authority;
 *  - refused: a reason is given;
 *  - the same input gives the same answer twice (no hidden state).
 * The first 16 input bytes are also judged as an IPv6 address and the first
 * 4 as IPv4 by od_webhook_addr_forbidden: an IPv4-mapped address must get
 * the IPv4 answer.
 */
#include "od/webhook.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *why = NULL;
    char *url = malloc(size + 1); /* a NUL-terminated copy for the checks below (the parser takes a length) */
    memcpy(url, data, size);
    url[size] = '\0';
    od_webhook_url_t u, again;
    int rc = od_webhook_url_parse(url, size, &u, &why);
    if (rc == 0) {
        size_t hl = strnlen(u.host, sizeof(u.host));
        if (why != NULL || hl == 0 || hl == sizeof(u.host) || u.port < 1 || u.port > 65535 || size > 2048)
            abort();
        if (!(size >= 7 && strncasecmp(url, "http://", 7) == 0) && !(size >= 8 && strncasecmp(url, "https://", 8) == 0))
            abort();
        int v6 = strchr(u.host, ':') != NULL;
        for (size_t i = 0; i < hl; i++) {
            char c = u.host[i];
            int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || (v6 && c == ':');
            if (!ok && !(v6 && c >= 'A' && c <= 'F'))
                abort();
        }
        for (size_t i = 0; i < size; i++)
            if (data[i] <= 0x20 || data[i] >= 0x7f)
                abort();
        const char *auth = strstr(url, "//") + 2;
        if (memchr(auth, '@', strcspn(auth, "/?#")) != NULL)
            abort();
    } else if (rc != -1 || why == NULL) {
        abort();
    }
    if (od_webhook_url_parse(url, size, &again, NULL) != rc || (rc == 0 && memcmp(&u, &again, sizeof(u)) != 0))
        abort();
    free(url);

    if (size >= 16) {
        struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
        memcpy(&a6.sin6_addr, data, 16);
        od_webhook_addr_forbidden((struct sockaddr *)&a6);
        /* ::ffff:a.b.c.d is judged as a.b.c.d */
        struct sockaddr_in a4 = {.sin_family = AF_INET};
        memcpy(&a4.sin_addr, data, 4);
        memset(&a6.sin6_addr, 0, 10);
        a6.sin6_addr.s6_addr[10] = a6.sin6_addr.s6_addr[11] = 0xff;
        memcpy(&a6.sin6_addr.s6_addr[12], data, 4);
        if (od_webhook_addr_forbidden((struct sockaddr *)&a6) != od_webhook_addr_forbidden((struct sockaddr *)&a4))
            abort();
    }
    return 0;
}
