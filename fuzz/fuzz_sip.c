/*
 * libFuzzer target for the sip provider's receive path
 * (services/dialer/provider_sip.c): each input is one datagram from the
 * trunk's address to a live provider that has calls in progress. The bytes
 * "CID" in the input are replaced by the Call-ID of a call in progress, so
 * that well-formed messages reach the call's transactions and dialogs, not
 * only the parser. Properties beyond "no crash, no sanitizer report":
 *  - ended() is called at most once per call, and only after dial();
 *  - the callbacks come in the documented order (ringing before answered).
 * The provider is created once; a call that ended is dialed again.
 */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "provider.h"

#define NCALLS 4

typedef struct fz_call {
    provider_call_t *h;
    int rang, answered, ended;
} fz_call_t;

static uv_loop_t *loop;
static provider_t *prov;
static uv_udp_t trunk;
static fz_call_t calls[NCALLS];
static char call_ids[NCALLS][80];

static void cb_ringing(void *arg)
{
    ((fz_call_t *)arg)->rang = 1;
}

static void cb_answered(void *arg)
{
    fz_call_t *c = arg;
    if (!c->rang || c->answered)
        abort();
    c->answered = 1;
}

static void cb_machine(void *arg)
{
    (void)arg;
}

static void cb_ended(void *arg, const provider_result_t *res)
{
    fz_call_t *c = arg;
    if (c->ended || res->detail == NULL || res->final_state == OD_FINAL_NONE)
        abort();
    c->ended = 1;
    c->h = NULL;
}

static const provider_cbs_t cbs = {cb_ringing, cb_answered, cb_machine, cb_ended, NULL};

static void dial(int i)
{
    char errstr[128];
    memset(&calls[i], 0, sizeof(calls[i]));
    provider_req_t req = {.call_id = "01234567-89ab-7def-8123-456789abcdef", .phone = "+34612345670",
                          .scenario = "fuzz", .caller_id = "+15005550006"};
    if (prov->ops->dial(prov, &req, &cbs, &calls[i], &calls[i].h, errstr, sizeof(errstr)) != 0)
        abort();
}

static void on_alloc(uv_handle_t *h, size_t n, uv_buf_t *b)
{
    (void)h, (void)n;
    static char buf[65536];
    *b = uv_buf_init(buf, sizeof(buf));
}

/* what the provider sends (INVITEs, ACKs, CANCELs, BYEs): the Call-IDs to aim at */
static void on_recv(uv_udp_t *u, ssize_t n, const uv_buf_t *b, const struct sockaddr *from, unsigned flags)
{
    (void)u, (void)from, (void)flags;
    if (n <= 0)
        return;
    const char *p = memmem(b->base, (size_t)n, "Call-ID: ", 9);
    if (p == NULL)
        return;
    p += 9;
    size_t len = strcspn(p, "\r\n");
    if (len >= sizeof(call_ids[0]) || p + len > b->base + n)
        return;
    static unsigned next;
    memcpy(call_ids[next % NCALLS], p, len);
    call_ids[next % NCALLS][len] = '\0';
    next++;
}

static void setup(void)
{
    loop = uv_default_loop();
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_udp_init(loop, &trunk);
    uv_udp_bind(&trunk, (const struct sockaddr *)&a, 0);
    int len = sizeof(a);
    uv_udp_getsockname(&trunk, (struct sockaddr *)&a, &len);
    uv_udp_recv_start(&trunk, on_alloc, on_recv);
    char trunk_s[64], errstr[128];
    snprintf(trunk_s, sizeof(trunk_s), "127.0.0.1:%d", ntohs(a.sin_port));
    provider_sip_conf_t conf = {.trunk = trunk_s, .bind = "127.0.0.1:0", .contact_host = "", .username = "u",
                                .password = "p", .realm = "", .media_host = "127.0.0.1", .media_port = 40000,
                                .cps = 100000, .max_concurrent = 1000, .ring_timeout_ms = 600000,
                                .max_talk_ms = 600000, .t1_ms = 500};
    prov = provider_sip_new(loop, &conf, errstr, sizeof(errstr));
    if (prov == NULL)
        abort();
    for (int i = 0; i < NCALLS; i++)
        dial(i);
    for (int i = 0; i < 500 && call_ids[NCALLS - 1][0] == '\0'; i++)
        uv_run(loop, UV_RUN_NOWAIT), usleep(1000);
    if (call_ids[NCALLS - 1][0] == '\0')
        abort(); /* the INVITEs never came: the target would aim at nothing */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (prov == NULL)
        setup();
    if (size > 60000)
        return 0;
    /* "CID" -> a live Call-ID */
    static char msg[65536 + 1024];
    size_t o = 0;
    unsigned k = 0;
    for (size_t i = 0; i < size && o < sizeof(msg) - 100; i++) {
        if (i + 3 <= size && memcmp(data + i, "CID", 3) == 0) {
            const char *id = call_ids[k++ % NCALLS];
            size_t l = strlen(id);
            memcpy(msg + o, id, l);
            o += l;
            i += 2;
        } else {
            msg[o++] = (char)data[i];
        }
    }
    /* the same bytes as a TCP stream: every message cut out lies inside it, and the cutting ends */
    size_t at = 0, skip, len;
    const char *why;
    int rc;
    while ((rc = provider_sip_frame(msg + at, o - at, &skip, &len, &why)) == 1) {
        if (len == 0 || at + skip + len > o)
            abort();
        at += skip + len;
    }
    if (at + skip > o || (rc < 0 && why == NULL))
        abort();
    uv_buf_t b = uv_buf_init(msg, (unsigned)o);
    struct sockaddr_storage dst;
    uv_ip4_addr("127.0.0.1", provider_sip_port(prov), (struct sockaddr_in *)&dst);
    uv_udp_try_send(&trunk, &b, 1, (const struct sockaddr *)&dst);
    for (int i = 0; i < 3; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    for (int i = 0; i < NCALLS; i++)
        if (calls[i].ended)
            dial(i);
    return 0;
}
