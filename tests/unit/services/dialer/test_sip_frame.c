/* Messages on a SIP stream (services/dialer/sip_frame.c): cut by Content-Length, keep-alives skipped, bad streams refused. */
#include <stdlib.h>
#include <string.h>

#include "od_test.h"
#include "provider.h"

/* Frames `s` whole; returns the result, with skip/len/why. */
static int frame(const char *s, size_t *skip, size_t *len, const char **why)
{
    *why = NULL;
    return provider_sip_frame(s, strlen(s), skip, len, why);
}

static void test_whole_messages(void)
{
    size_t skip, len;
    const char *why;
    const char *bye = "BYE sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    CHECK(frame(bye, &skip, &len, &why) == 1 && skip == 0 && len == strlen(bye));

    /* a body, then the next message's first bytes: only the first is taken */
    const char *two = "SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nv=0\r\nSIP/2.0 1";
    CHECK(frame(two, &skip, &len, &why) == 1 && len == strlen(two) - strlen("SIP/2.0 1"));

    /* the compact form, any case, spaces around the colon */
    const char *compact = "SIP/2.0 180 Ringing\r\nl : 2\r\n\r\nab";
    CHECK(frame(compact, &skip, &len, &why) == 1 && len == strlen(compact));
    CHECK(frame("SIP/2.0 180 Ringing\r\nCONTENT-LENGTH:2\r\n\r\nab", &skip, &len, &why) == 1);

    /* CRLF keep-alives before a message are skipped */
    const char *ka = "\r\n\r\n\r\nOPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n";
    CHECK(frame(ka, &skip, &len, &why) == 1 && skip == 6 && len == strlen(ka) - 6);
}

static void test_partial_messages(void)
{
    size_t skip, len;
    const char *why;
    CHECK(frame("", &skip, &len, &why) == 0 && skip == 0);
    CHECK(frame("\r\n", &skip, &len, &why) == 0 && skip == 2);
    CHECK(frame("SIP/2.0 200 OK\r\nContent-Length: 10\r\n", &skip, &len, &why) == 0);      /* no header end */
    CHECK(frame("SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc", &skip, &len, &why) == 0); /* body short */
}

static void test_bad_streams(void)
{
    size_t skip, len;
    const char *why;
    CHECK(frame("SIP/2.0 100 Trying\r\nVia: x\r\n\r\n", &skip, &len, &why) == -1);
    CHECK(why != NULL && strstr(why, "Content-Length") != NULL);
    CHECK(frame("SIP/2.0 100 Trying\r\nContent-Length: x\r\n\r\n", &skip, &len, &why) == -1);
    CHECK(frame("SIP/2.0 100 Trying\r\nContent-Length: 99999999\r\n\r\n", &skip, &len, &why) == -1);
    /* "xl: 3" is not the compact form: the l must start a line */
    CHECK(frame("SIP/2.0 100 Trying\r\nxl: 3\r\n\r\nabc", &skip, &len, &why) == -1);

    /* a header block over 64 KiB, ended or not */
    size_t big = SIP_TCP_MAX + 10;
    char *s = malloc(big + 8);
    memset(s, 'X', big);
    s[big] = '\0';
    CHECK(frame(s, &skip, &len, &why) == -1 && why != NULL && strstr(why, "64 KiB") != NULL);
    memcpy(s + big, "\r\n\r\n", 5);
    CHECK(frame(s, &skip, &len, &why) == -1);
    free(s);
}

int main(void)
{
    test_whole_messages();
    test_partial_messages();
    test_bad_streams();
    return od_test_result("dialer_sip_frame");
}
