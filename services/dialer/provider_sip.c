/*
 * The `sip` provider (DESIGN §4, docs/sip.md): a SIP user agent client toward
 * its trunks, over UDP and TCP, on the dialer's loop. libosip2 parses and prints the
 * messages and runs the INVITE and non-INVITE client transactions (ICT,
 * NICT: retransmissions, Timers A/B/D/E/F/K); the socket, the timers that
 * drive osip's, the dialogs, the ACK of a 2xx, digest authentication, CANCEL
 * and the trunk's limits are ours. No thread.
 *
 * One call:
 *
 *   dial() ──► QUEUED ──(the trunk's calls-per-second and concurrency allow)──► INVITING
 *   INVITING ──1xx──► (ringing() on 180/183) ──2xx──► ACK, answered() ──► UP
 *   INVITING ──401/407──► INVITE again with credentials (once)
 *   INVITING ──3xx-6xx / Timer B / transport error──► ended(mapped state)
 *   INVITING ──ring timeout or hangup()──► CANCELING ──487──► ended(no_answer)
 *   UP ──BYE from the callee──► 200, ended(completed)
 *   UP ──talk limit or hangup()──► BYE ──(200 or Timer F)──► ended(completed)
 *
 * Responses that arrive after their transaction is gone (a 2xx retransmitted
 * because our ACK was lost, a forked 2xx from a second callee) are matched to
 * their call by Call-ID: the first is ACKed again, the second ACKed and sent
 * a BYE. Requests for calls we do not know get 481.
 *
 * Trunks: the default one (OUTDIAL_SIP_TRUNK) and the named ones of the
 * trunks file. dial() picks the call's trunk (caller ID, then project, then
 * the default); the trunk keeps the call's queue, pace and slots, its
 * credentials and its address. One socket serves them all: a datagram is
 * taken only from a trunk's address, and one about a call only from that
 * call's trunk.
 *
 * TCP: a trunk with transport tcp gets every request over one TCP connection
 * that we open (and open again when it closes); a udp trunk gets over TCP any
 * request larger than 1300 bytes (RFC 3261 18.1.1). The top Via names the
 * transport, which osip reads too (no retransmissions over TCP). What comes
 * back on the connection is cut into messages by Content-Length. We do not
 * listen on TCP: the trunk answers, and sends its own requests, on our
 * connection, or by UDP to our Contact.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <osip2/osip.h>
#include <osip2/osip_time.h>
#include <osipparser2/osip_parser.h>
#include <osipparser2/sdp_message.h>

#include "od/core.h"
#include "od/log.h"
#include "provider.h"

#define SIP_MAX_DATAGRAM 65535
#define SIP_UDP_MAX 1300        /* RFC 3261 18.1.1: a larger request goes over TCP */
#define DIGEST_PARAM_MAX 2048   /* the longest nonce or opaque of a challenge we answer */

typedef enum sip_phase {
    PH_QUEUED,    /* waiting for the trunk's limits (trunk->queue) */
    PH_INVITING,  /* INVITE sent, no final answer yet */
    PH_CANCELING, /* CANCEL sent: waiting for the INVITE's final answer (487) */
    PH_UP,        /* 2xx ACKed: the conversation */
    PH_BYE,       /* our BYE sent: waiting for its answer */
    PH_DONE,      /* ended() reported; freed when its transactions are gone */
} sip_phase_t;

typedef struct provider_sip provider_sip_t;
typedef struct sip_trunk sip_trunk_t;

/* The TCP connection to a trunk: opened by its first TCP message, again after it closes. */
typedef struct sip_conn {
    sip_trunk_t *t;
    uv_tcp_t tcp;
    uv_connect_t connect;
    int up;           /* connected: before, what is sent waits in `pending` */
    int dead;         /* closing: nothing more is sent or read */
    od_buf_t pending;
    char *in;         /* bytes received that are not a whole message yet */
    size_t in_len, in_cap;
} sip_conn_t;

/* One trunk: where its calls go, and its limits. */
struct sip_trunk {
    provider_sip_t *sip;
    const provider_sip_trunk_t *conf; /* sip->tconf[i]: the provider's own copy */
    struct sockaddr_storage addr;
    uv_timer_t pace;                  /* releases queued calls at the trunk's rate */
    provider_call_t *queue, *queue_tail; /* QUEUED calls, newest first */
    int active;                       /* calls holding a slot of the trunk (INVITING .. BYE) */
    uint64_t last_invite_ms;
    sip_conn_t *conn;                 /* the TCP connection, if one is open or opening */
};

struct provider_call {
    provider_sip_t *sip;
    sip_trunk_t *trunk;                /* chosen at dial() */
    struct provider_call *prev, *next; /* sip->calls (or trunk->queue while QUEUED) */
    const provider_cbs_t *cbs;
    void *arg;
    sip_phase_t phase;
    char call_id[64];     /* our Call-ID header */
    char from_tag[24];
    char to_tag[128];     /* the callee's tag, from the 2xx */
    char phone[24];
    char caller[24];
    char remote_target[256]; /* Contact of the 2xx: where in-dialog requests go */
    char media_host[64];     /* the callee's media address and first codec, from the 2xx's SDP */
    char codec[16];
    int media_port;
    provider_media_t media;  /* what media() returns */
    unsigned cseq;           /* of the current INVITE */
    char branch[48];         /* of the current INVITE (CANCEL reuses it) */
    int tcp;                 /* the current INVITE went over TCP (its CANCEL follows it) */
    int auth_sent;           /* credentials sent once: a second challenge fails the call */
    int rang;
    int got_1xx;             /* a provisional answer came: CANCEL may be sent */
    int cancel_pending;      /* CANCEL asked before any provisional answer */
    int cancel_reason;       /* 1: ring timeout, 2: hangup() */
    int hangup_asked;
    od_hangup_by_t hangup_by; /* an answered call: who ended it (set before finish(); ours unless the callee's BYE) */
    uint64_t answered_ms;    /* loop time of the 2xx */
    int ntrans;              /* live osip transactions pointing at this call */
    uv_timer_t timer;        /* ring timeout while INVITING, talk limit while UP */
    int timer_closed;
    provider_result_t res;
    char detail[160];
};

struct provider_sip {
    provider_t base;
    provider_sip_conf_t conf;
    osip_t *osip;
    uv_udp_t udp;
    provider_sip_trunk_t *tconf; /* the named trunks' settings [0, nnamed), then the default's */
    sip_trunk_t *trunks;     /* the same order; ntrunks in use (the default last, if there is one) */
    size_t nnamed, ntrunks;
    sip_trunk_t *dflt;       /* calls no named trunk selects (NULL: they fail) */
    char local_host[64];
    int local_port;
    uv_timer_t tick;         /* drives osip's timers */
    provider_call_t *calls;  /* INVITING .. DONE */
    osip_transaction_t **dead; /* transactions killed during an execute: freed after it */
    size_t ndead, cap_dead;
    uint64_t seq;
    int closing;             /* handles still closing in destroy */
    int destroyed;
    uint64_t stray;          /* datagrams from anyone but the trunks (or about a call, from another trunk), dropped */
};

/* ------------------------------------------------------------------ helpers */

static void list_remove(provider_call_t **head, provider_call_t *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void list_push(provider_call_t **head, provider_call_t *c)
{
    c->prev = NULL;
    c->next = *head;
    if (*head != NULL)
        (*head)->prev = c;
    *head = c;
}

static provider_call_t *find_call(provider_sip_t *sip, const osip_message_t *m)
{
    if (m->call_id == NULL || m->call_id->number == NULL)
        return NULL;
    for (provider_call_t *c = sip->calls; c != NULL; c = c->next)
        if (strcmp(c->call_id, m->call_id->number) == 0)
            return c;
    return NULL;
}

static int send_udp(sip_trunk_t *t, const char *buf, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
    int rc = uv_udp_try_send(&t->sip->udp, &b, 1, (const struct sockaddr *)&t->addr);
    if (rc < 0) {
        od_warn("sip: send to trunk %s failed: %s", t->conf->name, uv_strerror(rc));
        return -1;
    }
    return 0;
}

static int send_tcp(sip_trunk_t *t, const char *buf, size_t len);

/* 1 if the message's top Via says TCP: how it goes (a request) or came (the request of a response). */
static int via_tcp(const osip_message_t *m)
{
    osip_via_t *v = osip_list_get(&m->vias, 0);
    return v != NULL && v->protocol != NULL && osip_strcasecmp(v->protocol, "TCP") == 0;
}

/* Sends a message to trunk `t` over the transport its top Via names. */
static int send_msg(sip_trunk_t *t, osip_message_t *m)
{
    char *buf = NULL;
    size_t len = 0;
    if (osip_message_to_str(m, &buf, &len) != 0)
        return -1;
    int rc = via_tcp(m) ? send_tcp(t, buf, len) : send_udp(t, buf, len);
    osip_free(buf);
    return rc;
}

/*
 * Chooses the transport of a request before it is first sent, in its top Via
 * (osip reads it too: no retransmissions on TCP): TCP for a tcp trunk, when
 * `force`d (a CANCEL follows its INVITE), or for a request over 1300 bytes
 * (RFC 3261 18.1.1); else UDP. Returns 1 for TCP.
 */
static int pick_transport(provider_call_t *c, osip_message_t *m, int force)
{
    int tcp = force || c->trunk->conf->tcp;
    if (!tcp) {
        char *buf = NULL;
        size_t len = 0;
        if (osip_message_to_str(m, &buf, &len) == 0)
            tcp = len > SIP_UDP_MAX;
        osip_free(buf);
    }
    osip_via_t *v = osip_list_get(&m->vias, 0);
    if (tcp && v != NULL) {
        osip_free(v->protocol);
        v->protocol = osip_strdup("TCP");
    }
    return tcp;
}

/* ------------------------------------------------------------------ the end of a call */

static void free_if_done(provider_call_t *c);

static void closed_one(provider_sip_t *sip);

static void on_timer_closed(uv_handle_t *h)
{
    provider_call_t *c = h->data;
    if (c->sip->destroyed) {
        provider_sip_t *sip = c->sip;
        free(c);
        closed_one(sip);
        return;
    }
    c->timer_closed = 1;
    free_if_done(c);
}

static void free_if_done(provider_call_t *c)
{
    if (c->phase != PH_DONE || c->ntrans > 0)
        return;
    if (!c->timer_closed) {
        if (!uv_is_closing((uv_handle_t *)&c->timer))
            uv_close((uv_handle_t *)&c->timer, on_timer_closed);
        return;
    }
    list_remove(&c->sip->calls, c);
    free(c);
}

static void release_slot(provider_call_t *c);
static void on_pace(uv_timer_t *t);

/* Reports the end of the call (once) and frees it once osip lets go of it. */
static void finish(provider_call_t *c, od_final_state_t fs, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void finish(provider_call_t *c, od_final_state_t fs, const char *fmt, ...)
{
    if (c->phase == PH_DONE)
        return;
    release_slot(c);
    uv_timer_stop(&c->timer);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    memset(&c->res, 0, sizeof(c->res));
    c->res.final_state = fs;
    c->res.outcome = OD_OUTCOME_NONE;
    c->res.goal_completed = -1;
    if (fs == OD_FINAL_COMPLETED && c->answered_ms > 0)
        c->res.talk_ms = (int64_t)(uv_now(c->sip->base.loop) - c->answered_ms);
    if (fs == OD_FINAL_COMPLETED)
        c->res.hangup_by = c->hangup_by == OD_HANGUP_CALLEE ? OD_HANGUP_CALLEE : OD_HANGUP_US;
    c->res.detail = c->detail;
    c->phase = PH_DONE;
    c->cbs->ended(c->arg, &c->res);
    free_if_done(c);
}

/* SIP final answers to final states (DESIGN §4); unknown codes by their class. */
static od_final_state_t map_status(int code)
{
    switch (code) {
    case 486:
    case 600:
        return OD_FINAL_BUSY;
    case 404:
    case 484:
    case 604:
    case 410:
    case 416:
        return OD_FINAL_INVALID_NUMBER;
    case 403:
    case 603:
        return OD_FINAL_CALLER_ID_UNAUTHORIZED;
    case 408:
    case 480:
    case 487:
        return OD_FINAL_NO_ANSWER;
    default:
        break;
    }
    if (code >= 600)
        return OD_FINAL_NO_ANSWER; /* a global refusal by the callee */
    return OD_FINAL_PROVIDER_ERROR; /* 3xx (no redirect followed), other 4xx, 5xx */
}

/* ------------------------------------------------------------------ building requests */

static void via_of(provider_sip_t *sip, const char *branch, char *out, size_t n)
{
    snprintf(out, n, "SIP/2.0/UDP %s:%d;rport;branch=z9hG4bK%s", sip->local_host, sip->local_port, branch);
}

/* A request of the call: INVITE (cseq, new branch), CANCEL (the INVITE's
 * cseq and branch), ACK of a 2xx and BYE (in the dialog). */
static osip_message_t *build_request(provider_call_t *c, const char *method, unsigned cseq, const char *branch,
                                     const char *to_tag)
{
    provider_sip_t *sip = c->sip;
    const char *trunk = c->trunk->conf->address;
    osip_message_t *m = NULL;
    osip_uri_t *uri = NULL;
    char buf[512];
    int in_dialog = to_tag != NULL && strcmp(method, "CANCEL") != 0;
    if (osip_message_init(&m) != 0)
        return NULL;
    osip_message_set_method(m, osip_strdup(method));
    osip_message_set_version(m, osip_strdup("SIP/2.0"));
    if (in_dialog && c->remote_target[0] != '\0')
        snprintf(buf, sizeof(buf), "%s", c->remote_target);
    else
        snprintf(buf, sizeof(buf), "sip:%s@%s", c->phone, trunk);
    if (osip_uri_init(&uri) != 0 || osip_uri_parse(uri, buf) != 0) {
        osip_uri_free(uri);
        osip_message_free(m);
        return NULL;
    }
    osip_message_set_uri(m, uri);
    via_of(sip, branch, buf, sizeof(buf));
    osip_message_set_via(m, buf);
    snprintf(buf, sizeof(buf), "<sip:%s@%s>;tag=%s", c->caller[0] ? c->caller : "anonymous", sip->local_host,
             c->from_tag);
    osip_message_set_from(m, buf);
    if (to_tag != NULL && in_dialog)
        snprintf(buf, sizeof(buf), "<sip:%s@%s>;tag=%s", c->phone, trunk, to_tag);
    else
        snprintf(buf, sizeof(buf), "<sip:%s@%s>", c->phone, trunk);
    osip_message_set_to(m, buf);
    osip_message_set_call_id(m, c->call_id);
    snprintf(buf, sizeof(buf), "%u %s", cseq, method);
    osip_message_set_cseq(m, buf);
    osip_message_set_max_forwards(m, "70");
    osip_message_set_header(m, "User-Agent", "outdial");
    if (strcmp(method, "INVITE") == 0) {
        snprintf(buf, sizeof(buf), "<sip:outdial@%s:%d>", sip->local_host, sip->local_port);
        osip_message_set_contact(m, buf);
        if (c->caller[0] != '\0') {
            snprintf(buf, sizeof(buf), "<sip:%s@%s>", c->caller, trunk);
            osip_message_set_header(m, "P-Asserted-Identity", buf);
        }
        /* the offer: the conversation engine's media address, G.711 µ-law and A-law, telephone events */
        char sdp[512];
        int n = snprintf(sdp, sizeof(sdp),
                         "v=0\r\no=outdial %llu 1 IN IP4 %s\r\ns=outdial\r\nc=IN IP4 %s\r\nt=0 0\r\n"
                         "m=audio %lld RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                         "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
                         (unsigned long long)sip->seq, sip->conf.media_host, sip->conf.media_host,
                         (long long)sip->conf.media_port);
        osip_message_set_body(m, sdp, (size_t)n);
        osip_message_set_content_type(m, "application/sdp");
    }
    return m;
}

/* ------------------------------------------------------------------ digest authentication (RFC 2617 / 8760: MD5) */

static void md5_hex(const char *s, char out[33])
{
    unsigned char d[16];
    unsigned int n = 0;
    EVP_Digest(s, strlen(s), d, &n, EVP_md5(), NULL);
    od_hex(d, sizeof(d), out);
}

/* A challenge parameter without its quotes into buf ("" when absent); -1 if it does not fit (never cut). */
static int unq(const char *s, char *buf, size_t n)
{
    buf[0] = '\0';
    if (s == NULL)
        return 0;
    size_t len = strlen(s);
    if (len >= 2 && s[0] == '"' && s[len - 1] == '"')
        s++, len -= 2;
    if (len >= n)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    return 0;
}

/* The Authorization (401) or Proxy-Authorization (407) value answering the
 * challenge of `resp` for an INVITE to `uri`. -1 when the challenge is not
 * one we can answer (no MD5, no credentials). */
static int digest_answer(provider_call_t *c, const osip_message_t *resp, const char *uri, char *out, size_t n)
{
    const provider_sip_trunk_t *tc = c->trunk->conf; /* each trunk its own credentials */
    osip_www_authenticate_t *ch = NULL;
    if (resp->status_code == 401)
        osip_message_get_www_authenticate(resp, 0, &ch);
    else
        osip_message_get_proxy_authenticate(resp, 0, &ch);
    if (ch == NULL || tc->username[0] == '\0')
        return -1;
    /* a nonce or opaque cut short would be refused: longer than these, the challenge is not answered */
    char realm[256], nonce[DIGEST_PARAM_MAX], opaque[DIGEST_PARAM_MAX], qop[64], alg[32];
    if (unq(osip_www_authenticate_get_realm(ch), realm, sizeof(realm)) != 0 ||
        unq(osip_www_authenticate_get_nonce(ch), nonce, sizeof(nonce)) != 0 ||
        unq(osip_www_authenticate_get_opaque(ch), opaque, sizeof(opaque)) != 0 ||
        unq(osip_www_authenticate_get_qop_options(ch), qop, sizeof(qop)) != 0 ||
        unq(osip_www_authenticate_get_algorithm(ch), alg, sizeof(alg)) != 0)
        return -1;
    if (alg[0] != '\0' && strcasecmp(alg, "MD5") != 0)
        return -1;
    char a1[1024], a2[512], ha1[33], ha2[33], resp_hex[33], tmp[DIGEST_PARAM_MAX + 128], cnonce[17];
    snprintf(a1, sizeof(a1), "%s:%s:%s", tc->username, tc->realm[0] ? tc->realm : realm, tc->password);
    md5_hex(a1, ha1);
    snprintf(a2, sizeof(a2), "INVITE:%s", uri);
    md5_hex(a2, ha2);
    int use_qop = strstr(qop, "auth") != NULL;
    od_random_hex(cnonce, (sizeof(cnonce) - 1) / 2);
    if (use_qop)
        snprintf(tmp, sizeof(tmp), "%s:%s:00000001:%s:auth:%s", ha1, nonce, cnonce, ha2);
    else
        snprintf(tmp, sizeof(tmp), "%s:%s:%s", ha1, nonce, ha2);
    md5_hex(tmp, resp_hex);
    int len = snprintf(out, n, "Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", response=\"%s\", "
                               "algorithm=MD5",
                       tc->username, realm, nonce, uri, resp_hex);
    if (use_qop && len >= 0 && (size_t)len < n)
        len += snprintf(out + len, n - (size_t)len, ", qop=auth, nc=00000001, cnonce=\"%s\"", cnonce);
    if (opaque[0] != '\0' && len >= 0 && (size_t)len < n)
        len += snprintf(out + len, n - (size_t)len, ", opaque=\"%s\"", opaque);
    return len >= 0 && (size_t)len < n ? 0 : -1;
}

/* ------------------------------------------------------------------ transactions */

/* An osip transaction timer: `ms` long, from `now`. */
static void arm(struct timeval *start, int *length, int ms, struct timeval now)
{
    *length = ms;
    *start = now;
    add_gettimeofday(start, ms);
}

/* Starts the transaction of request `m` on the transport pick_transport() chooses (`force_tcp`: a CANCEL follows
 * its INVITE); an INVITE's choice is kept in c->tcp. */
static int start_transaction(provider_call_t *c, osip_fsm_type_t type, osip_message_t *m, int force_tcp)
{
    int tcp = pick_transport(c, m, force_tcp);
    if (type == ICT)
        c->tcp = tcp;
    osip_transaction_t *tr = NULL;
    if (osip_transaction_init(&tr, type, c->sip->osip, m) != 0) {
        osip_message_free(m);
        return -1;
    }
    osip_transaction_set_your_instance(tr, c);
    c->ntrans++;
    /* osip armed the timers with its default T1 (500 ms) at init: armed again with ours; over TCP
     * osip left the retransmission timers (A, E) off, as they stay */
    int t1 = (int)c->sip->conf.t1_ms;
    struct timeval now;
    osip_gettimeofday(&now, NULL);
    if (type == ICT && tr->ict_context != NULL) {
        if (!tcp)
            arm(&tr->ict_context->timer_a_start, &tr->ict_context->timer_a_length, t1, now);
        arm(&tr->ict_context->timer_b_start, &tr->ict_context->timer_b_length, 64 * t1, now);
    } else if (type == NICT && tr->nict_context != NULL) {
        if (!tcp)
            arm(&tr->nict_context->timer_e_start, &tr->nict_context->timer_e_length, t1, now);
        arm(&tr->nict_context->timer_f_start, &tr->nict_context->timer_f_length, 64 * t1, now);
    }
    osip_transaction_add_event(tr, osip_new_outgoing_sipmessage(m));
    return 0;
}

static void run_osip(provider_sip_t *sip);

static int send_invite(provider_call_t *c, const char *auth_header, const char *auth_value)
{
    od_random_hex(c->branch, 10);
    osip_message_t *m = build_request(c, "INVITE", c->cseq, c->branch, NULL);
    if (m == NULL)
        return -1;
    if (auth_value != NULL) {
        int rc = strcmp(auth_header, "Authorization") == 0 ? osip_message_set_authorization(m, auth_value)
                                                           : osip_message_set_proxy_authorization(m, auth_value);
        if (rc != 0) {
            osip_message_free(m);
            return -1;
        }
    }
    return start_transaction(c, ICT, m, 0);
}

/* A request sent once, outside any transaction, in the dialog of `to_tag`:
 * the ACK of a 2xx, or the BYE of a forked 2xx's dialog we do not keep. */
static void send_once(provider_call_t *c, const char *method, unsigned cseq, const char *to_tag)
{
    char branch[24];
    od_random_hex(branch, 10);
    osip_message_t *m = build_request(c, method, cseq, branch, to_tag);
    if (m != NULL) {
        pick_transport(c, m, 0);
        send_msg(c->trunk, m);
        osip_message_free(m);
    }
}

/* A 2xx again: of our dialog (our ACK was lost), ACKed again; of a forked
 * dialog (a second callee answered), ACKed and ended with a BYE. */
static void ack_again(provider_call_t *c, const char *tag)
{
    send_once(c, "ACK", c->cseq, tag);
    if (strcmp(tag, c->to_tag) != 0)
        send_once(c, "BYE", c->cseq + 1, tag);
}

static void send_bye(provider_call_t *c)
{
    char branch[24];
    od_random_hex(branch, 10);
    c->phase = PH_BYE;
    osip_message_t *bye = build_request(c, "BYE", ++c->cseq, branch, c->to_tag);
    if (bye == NULL || start_transaction(c, NICT, bye, 0) != 0)
        finish(c, OD_FINAL_COMPLETED, "hung up (BYE could not be sent)");
}

static void send_cancel(provider_call_t *c, int reason)
{
    c->cancel_reason = reason;
    if (!c->got_1xx) {
        /* RFC 3261 9.1: no CANCEL before a provisional answer; it goes with the first one (or Timer B ends the call) */
        c->cancel_pending = 1;
        return;
    }
    c->phase = PH_CANCELING;
    osip_message_t *m = build_request(c, "CANCEL", c->cseq, c->branch, NULL);
    if (m == NULL || start_transaction(c, NICT, m, c->tcp) != 0)
        finish(c, OD_FINAL_PROVIDER_ERROR, "CANCEL could not be sent");
}

static const char *tag_of(osip_to_t *to)
{
    osip_generic_param_t *p = NULL;
    if (to == NULL || osip_to_get_tag(to, &p) != 0 || p == NULL || p->gvalue == NULL)
        return NULL;
    return p->gvalue;
}

static void on_ring_timeout(uv_timer_t *t)
{
    provider_call_t *c = t->data;
    if (c->phase == PH_INVITING)
        send_cancel(c, 1);
    else if (c->phase == PH_UP)
        send_bye(c); /* the talk limit */
    run_osip(c->sip);
}

/* The callee's side of the media from the SDP answer of a 2xx: the
 * connection address (the audio stream's own, else the session's), the
 * audio port and the first payload. Missing parts stay empty: the call goes on. */
static void read_answer_sdp(provider_call_t *c, const osip_message_t *resp)
{
    osip_body_t *body = NULL;
    sdp_message_t *sdp = NULL;
    if (osip_message_get_body(resp, 0, &body) < 0 || body == NULL || body->body == NULL ||
        sdp_message_init(&sdp) != 0)
        return;
    if (sdp_message_parse(sdp, body->body) == 0) {
        for (int i = 0; !sdp_message_endof_media(sdp, i); i++) {
            const char *type = sdp_message_m_media_get(sdp, i), *port = sdp_message_m_port_get(sdp, i);
            if (type == NULL || strcmp(type, "audio") != 0 || port == NULL)
                continue;
            const char *addr = sdp_message_c_addr_get(sdp, i, 0);
            if (addr == NULL)
                addr = sdp_message_c_addr_get(sdp, -1, 0);
            snprintf(c->media_host, sizeof(c->media_host), "%s", addr != NULL ? addr : "");
            c->media_port = atoi(port);
            const char *pt = sdp_message_m_payload_get(sdp, i, 0);
            snprintf(c->codec, sizeof(c->codec), "%s",
                     pt == NULL ? "" : strcmp(pt, "0") == 0 ? "PCMU" : strcmp(pt, "8") == 0 ? "PCMA" : pt);
            break;
        }
    }
    sdp_message_free(sdp);
}

static void answered(provider_call_t *c, const osip_message_t *resp)
{
    const char *tag = tag_of(resp->to);
    snprintf(c->to_tag, sizeof(c->to_tag), "%s", tag != NULL ? tag : "");
    osip_contact_t *ct = NULL;
    char *s = NULL;
    if (osip_message_get_contact(resp, 0, &ct) >= 0 && ct != NULL && ct->url != NULL &&
        osip_uri_to_str(ct->url, &s) == 0) {
        snprintf(c->remote_target, sizeof(c->remote_target), "%s", s);
        osip_free(s);
    }
    send_once(c, "ACK", c->cseq, c->to_tag);
    if (c->phase == PH_CANCELING) {
        /* answered while our CANCEL crossed it: the call is ours to end */
        c->phase = PH_UP;
        send_bye(c);
        return;
    }
    c->phase = PH_UP;
    c->answered_ms = uv_now(c->sip->base.loop);
    read_answer_sdp(c, resp);
    uv_timer_stop(&c->timer);
    if (c->sip->conf.max_talk_ms > 0)
        uv_timer_start(&c->timer, on_ring_timeout, c->sip->conf.max_talk_ms, 0);
    c->cbs->answered(c->arg);
    if (c->hangup_asked && c->phase == PH_UP) /* asked before the answer (inside answered() it was sent) */
        send_bye(c);
}

/* ICT and NICT callbacks (osip calls them from inside osip_*_execute) */

static void on_ict_1xx(int type, osip_transaction_t *tr, osip_message_t *m)
{
    (void)type;
    provider_call_t *c = osip_transaction_get_your_instance(tr);
    if (c == NULL || c->phase == PH_DONE)
        return;
    c->got_1xx = 1;
    if ((m->status_code == 180 || m->status_code == 183) && !c->rang) {
        c->rang = 1;
        c->cbs->ringing(c->arg);
    }
    if (c->cancel_pending && c->phase == PH_INVITING) {
        c->cancel_pending = 0;
        send_cancel(c, c->cancel_reason);
    }
}

static void on_ict_2xx(int type, osip_transaction_t *tr, osip_message_t *m)
{
    (void)type;
    provider_call_t *c = osip_transaction_get_your_instance(tr);
    if (c == NULL || c->phase == PH_DONE)
        return;
    if (c->phase == PH_INVITING || c->phase == PH_CANCELING) {
        if (!c->rang) { /* answered without a ringing: the order of the callbacks holds */
            c->rang = 1;
            c->cbs->ringing(c->arg);
        }
        answered(c, m);
        return;
    }
    const char *tag = tag_of(m->to);
    ack_again(c, tag != NULL ? tag : c->to_tag);
}

static void on_ict_final(int type, osip_transaction_t *tr, osip_message_t *m)
{
    (void)type;
    provider_call_t *c = osip_transaction_get_your_instance(tr);
    if (c == NULL || c->phase == PH_DONE)
        return;
    int code = m->status_code;
    const char *reason = m->reason_phrase != NULL ? m->reason_phrase : "";
    if ((code == 401 || code == 407) && c->phase == PH_INVITING && !c->auth_sent) {
        char uri[256], auth[2 * DIGEST_PARAM_MAX + 1024];
        snprintf(uri, sizeof(uri), "sip:%s@%s", c->phone, c->trunk->conf->address);
        if (digest_answer(c, m, uri, auth, sizeof(auth)) == 0) {
            c->auth_sent = 1;
            c->cseq++;
            if (send_invite(c, code == 401 ? "Authorization" : "Proxy-Authorization", auth) == 0)
                return;
        }
        finish(c, OD_FINAL_PROVIDER_ERROR, "SIP %d %s: the trunk's challenge could not be answered", code, reason);
        return;
    }
    if (c->phase == PH_CANCELING && code == 487) {
        if (c->cancel_reason == 1)
            finish(c, OD_FINAL_NO_ANSWER, "ring timeout (%lld s): CANCEL, SIP 487 %s",
                   (long long)(c->sip->conf.ring_timeout_ms / 1000), reason);
        else
            finish(c, OD_FINAL_NO_ANSWER, "hung up before the answer: CANCEL, SIP 487 %s", reason);
        return;
    }
    if (code == 401 || code == 407)
        finish(c, OD_FINAL_PROVIDER_ERROR, "SIP %d %s: the trunk refused our credentials", code, reason);
    else
        finish(c, map_status(code), "SIP %d %s", code, reason);
}

static void on_ict_timeout(int type, osip_transaction_t *tr, osip_message_t *m)
{
    (void)type, (void)m;
    provider_call_t *c = osip_transaction_get_your_instance(tr);
    if (c != NULL && (c->phase == PH_INVITING || c->phase == PH_CANCELING))
        finish(c, OD_FINAL_PROVIDER_ERROR, "no answer from the trunk to the INVITE (Timer B, %lld ms)",
               (long long)(64 * c->sip->conf.t1_ms));
}

static void on_nict_final(int type, osip_transaction_t *tr, osip_message_t *m)
{
    (void)type;
    provider_call_t *c = osip_transaction_get_your_instance(tr);
    if (c == NULL || c->phase == PH_DONE || tr->orig_request == NULL)
        return;
    if (MSG_IS_BYE(tr->orig_request) && c->phase == PH_BYE)
        finish(c, OD_FINAL_COMPLETED, "hung up by us (BYE, SIP %d)", m != NULL ? m->status_code : 0);
}

static void on_nict_timeout(int type, osip_transaction_t *tr, osip_message_t *m)
{
    (void)type, (void)m;
    provider_call_t *c = osip_transaction_get_your_instance(tr);
    if (c == NULL || c->phase == PH_DONE || tr->orig_request == NULL)
        return;
    if (MSG_IS_BYE(tr->orig_request))
        finish(c, OD_FINAL_COMPLETED, "hung up by us (BYE unanswered)");
    else if (MSG_IS_CANCEL(tr->orig_request) && c->phase == PH_CANCELING)
        finish(c, OD_FINAL_NO_ANSWER, "CANCEL unanswered");
}

static void on_transport_error(int type, osip_transaction_t *tr, int error)
{
    (void)type;
    provider_call_t *c = osip_transaction_get_your_instance(tr);
    if (c != NULL)
        finish(c, OD_FINAL_PROVIDER_ERROR, "transport error toward the trunk (%d)", error);
}

static void on_kill(int type, osip_transaction_t *tr)
{
    (void)type;
    provider_sip_t *sip = osip_transaction_get_your_instance(tr) != NULL
                              ? ((provider_call_t *)osip_transaction_get_your_instance(tr))->sip
                              : NULL;
    osip_remove_transaction(tr->config, tr);
    if (sip == NULL) {
        osip_transaction_free2(tr);
        return;
    }
    if (sip->ndead == sip->cap_dead) {
        sip->cap_dead = sip->cap_dead ? 2 * sip->cap_dead : 64;
        sip->dead = od_realloc(sip->dead, sip->cap_dead * sizeof(*sip->dead));
    }
    sip->dead[sip->ndead++] = tr;
}

static int on_send(osip_transaction_t *tr, osip_message_t *m, char *host, int port, int sock)
{
    (void)host, (void)port, (void)sock;
    provider_call_t *c = osip_transaction_get_your_instance(tr);
    if (c == NULL)
        return -1;
    return send_msg(c->trunk, m) == 0 ? 0 : -1;
}

/* Runs osip's queued events, then frees the transactions that ended. */
static void run_osip(provider_sip_t *sip)
{
    for (int i = 0; i < 4; i++) {
        osip_ict_execute(sip->osip);
        osip_nict_execute(sip->osip);
    }
    for (size_t i = 0; i < sip->ndead; i++) {
        osip_transaction_t *tr = sip->dead[i];
        provider_call_t *c = osip_transaction_get_your_instance(tr);
        osip_transaction_free2(tr);
        if (c != NULL) {
            c->ntrans--;
            if (c->phase != PH_DONE && c->ntrans == 0 && c->phase != PH_UP)
                finish(c, OD_FINAL_PROVIDER_ERROR, "the INVITE transaction ended without a final answer");
            else
                free_if_done(c);
        }
    }
    sip->ndead = 0;
}

static void on_tick(uv_timer_t *t)
{
    provider_sip_t *sip = t->data;
    osip_timers_ict_execute(sip->osip);
    osip_timers_nict_execute(sip->osip);
    run_osip(sip);
}

/* ------------------------------------------------------------------ requests from the trunk */

static void reply(sip_trunk_t *t, const osip_message_t *req, int code, const char *reason)
{
    osip_message_t *r = NULL;
    if (osip_message_init(&r) != 0)
        return;
    osip_message_set_version(r, osip_strdup("SIP/2.0"));
    osip_message_set_status_code(r, code);
    osip_message_set_reason_phrase(r, osip_strdup(reason));
    osip_list_clone(&req->vias, &r->vias, (int (*)(void *, void **))osip_via_clone);
    osip_from_clone(req->from, &r->from);
    osip_to_clone(req->to, &r->to);
    osip_call_id_clone(req->call_id, &r->call_id);
    osip_cseq_clone(req->cseq, &r->cseq);
    send_msg(t, r);
    osip_message_free(r);
}

/* A request from trunk `t`; `c` is its call (NULL: none, or another trunk's). */
static void on_request(sip_trunk_t *t, provider_call_t *c, osip_message_t *m)
{
    if (MSG_IS_ACK(m))
        return;
    if (MSG_IS_BYE(m)) {
        if (c == NULL) {
            reply(t, m, 481, "Call/Transaction Does Not Exist");
            return;
        }
        reply(t, m, 200, "OK");
        if (c->phase == PH_UP || c->phase == PH_BYE) {
            /* after our own BYE (the two crossed) we hung up first */
            c->hangup_by = c->phase == PH_UP ? OD_HANGUP_CALLEE : OD_HANGUP_US;
            finish(c, OD_FINAL_COMPLETED, "hung up by the callee (BYE)");
        }
        return;
    }
    if (MSG_IS_OPTIONS(m)) {
        reply(t, m, 200, "OK");
        return;
    }
    reply(t, m, c == NULL ? 481 : 501, c == NULL ? "Call/Transaction Does Not Exist" : "Not Implemented");
}

/* A response that no transaction took: a 2xx retransmitted after our ACK,
 * or a forked 2xx, after the INVITE transaction ended. */
static void on_stray_response(provider_call_t *c, osip_message_t *m)
{
    if (c == NULL || !MSG_IS_STATUS_2XX(m) || m->cseq == NULL || m->cseq->method == NULL ||
        strcmp(m->cseq->method, "INVITE") != 0)
        return;
    const char *tag = tag_of(m->to);
    if (tag != NULL)
        ack_again(c, tag);
}

static int same_addr(const struct sockaddr *a, const struct sockaddr *b)
{
    if (a->sa_family != b->sa_family)
        return 0;
    if (a->sa_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
    return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* The first trunk at `from` (trunks may share an address: they differ by credentials). */
static sip_trunk_t *trunk_at(provider_sip_t *sip, const struct sockaddr *from)
{
    for (size_t i = 0; i < sip->ntrunks; i++)
        if (same_addr(from, (const struct sockaddr *)&sip->trunks[i].addr))
            return &sip->trunks[i];
    return NULL;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h, (void)suggested;
    static char slab[SIP_MAX_DATAGRAM];
    *buf = uv_buf_init(slab, sizeof(slab));
}

/* One message from trunk `t` (a datagram, or a whole message of its TCP connection). */
static void on_message(provider_sip_t *sip, sip_trunk_t *t, const struct sockaddr *from, const char *data, size_t n)
{
    osip_event_t *evt = osip_parse(data, n);
    if (evt == NULL || evt->sip == NULL) {
        od_debug("sip: an unparsable message of %zu bytes ignored", n);
        if (evt != NULL)
            osip_event_free(evt);
        return;
    }
    osip_message_t *m = evt->sip;
    if (m->call_id == NULL || m->cseq == NULL || m->from == NULL || m->to == NULL ||
        osip_list_size(&m->vias) < 1) {
        od_debug("sip: a message without Call-ID, CSeq, From, To or Via ignored");
        osip_event_free(evt);
        return;
    }
    provider_call_t *c = find_call(sip, m);
    if (c != NULL && !same_addr(from, (const struct sockaddr *)&c->trunk->addr)) {
        /* about a call of another trunk: that trunk alone may end or answer it */
        sip->stray++;
        c = NULL;
        if (!MSG_IS_REQUEST(m)) {
            osip_event_free(evt);
            return;
        }
    }
    if (MSG_IS_REQUEST(m)) {
        on_request(t, c, m);
        osip_event_free(evt);
    } else if (osip_find_transaction_and_add_event(sip->osip, evt) != 0) {
        on_stray_response(c, m);
        osip_event_free(evt);
    }
    run_osip(sip);
}

static void on_datagram(uv_udp_t *u, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from, unsigned flags)
{
    provider_sip_t *sip = u->data;
    (void)flags;
    if (n <= 0 || from == NULL)
        return;
    sip_trunk_t *t = trunk_at(sip, from);
    if (t == NULL) {
        /* only the trunks speak to us: anyone else could hang up calls with a forged BYE */
        sip->stray++;
        return;
    }
    on_message(sip, t, from, buf->base, (size_t)n);
}

/* ------------------------------------------------------------------ TCP (RFC 3261 18.1.1, 18.3) */

static void on_conn_closed(uv_handle_t *h)
{
    sip_conn_t *k = h->data;
    provider_sip_t *sip = k->t->sip;
    od_buf_free(&k->pending);
    free(k->in);
    free(k);
    if (sip->destroyed)
        closed_one(sip);
}

static void conn_close(sip_conn_t *k)
{
    if (k->dead)
        return;
    k->dead = 1;
    if (k->t->conn == k)
        k->t->conn = NULL;
    uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
}

/* The connection failed or closed: the calls whose INVITE went over it get no answer now; they end at once. */
static void conn_fail(sip_conn_t *k, const char *why)
{
    sip_trunk_t *t = k->t;
    conn_close(k);
    od_warn("sip: TCP connection to trunk %s (%s): %s", t->conf->name, t->conf->address, why);
    for (provider_call_t *c = t->sip->calls, *next; c != NULL; c = next) {
        next = c->next;
        if (c->trunk == t && c->tcp && (c->phase == PH_INVITING || c->phase == PH_CANCELING))
            finish(c, OD_FINAL_PROVIDER_ERROR, "TCP connection to the trunk: %s", why);
    }
}

static void on_written(uv_write_t *w, int status)
{
    (void)status; /* a failed write shows as a read error or a closed connection */
    free(w);
}

static int conn_write(sip_conn_t *k, const char *buf, size_t len)
{
    uv_write_t *w = od_malloc(sizeof(*w) + len);
    memcpy(w + 1, buf, len);
    uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)len);
    int rc = uv_write(w, (uv_stream_t *)&k->tcp, &b, 1, on_written);
    if (rc != 0) {
        free(w);
        conn_fail(k, uv_strerror(rc));
        return -1;
    }
    return 0;
}

/* Bytes from the trunk: cut into messages by their Content-Length (mandatory on a stream, RFC 3261 18.3). */
static void on_conn_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    sip_conn_t *k = s->data;
    sip_trunk_t *t = k->t;
    if (n == 0 || k->dead)
        return;
    if (n < 0) {
        conn_fail(k, n == UV_EOF ? "closed by the trunk" : uv_strerror((int)n));
        return;
    }
    if (k->in_len + (size_t)n > k->in_cap) {
        k->in_cap = k->in_len + (size_t)n;
        k->in = od_realloc(k->in, k->in_cap);
    }
    memcpy(k->in + k->in_len, buf->base, (size_t)n);
    k->in_len += (size_t)n;
    size_t at = 0;
    while (!k->dead) {
        size_t skip = 0, len = 0;
        const char *why = NULL;
        int rc = provider_sip_frame(k->in + at, k->in_len - at, &skip, &len, &why);
        at += skip;
        if (rc < 0)
            conn_fail(k, why);
        if (rc <= 0)
            break;
        on_message(t->sip, t, (const struct sockaddr *)&t->addr, k->in + at, len);
        at += len;
    }
    if (!k->dead) {
        memmove(k->in, k->in + at, k->in_len - at);
        k->in_len -= at;
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    sip_conn_t *k = req->data;
    if (status == UV_ECANCELED || k->dead)
        return; /* closed meanwhile */
    if (status < 0) {
        conn_fail(k, uv_strerror(status));
        return;
    }
    k->up = 1;
    uv_tcp_nodelay(&k->tcp, 1);
    uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_conn_read);
    if (k->pending.len > 0) {
        od_buf_t out = k->pending;
        k->pending = (od_buf_t)OD_BUF_INIT;
        conn_write(k, out.base, out.len);
        od_buf_free(&out);
    }
}

/* Sends over the trunk's TCP connection, opening it first if there is none. */
static int send_tcp(sip_trunk_t *t, const char *buf, size_t len)
{
    if (t->conn == NULL) {
        sip_conn_t *k = od_calloc(1, sizeof(*k));
        k->t = t;
        k->pending = (od_buf_t)OD_BUF_INIT;
        uv_tcp_init(t->sip->base.loop, &k->tcp);
        k->tcp.data = k;
        k->connect.data = k;
        t->conn = k;
        int rc = uv_tcp_connect(&k->connect, &k->tcp, (const struct sockaddr *)&t->addr, on_connected);
        if (rc != 0) {
            conn_close(k);
            od_warn("sip: TCP connection to trunk %s (%s): %s", t->conf->name, t->conf->address, uv_strerror(rc));
            return -1;
        }
    }
    if (!t->conn->up) {
        od_buf_append(&t->conn->pending, buf, len);
        return 0;
    }
    return conn_write(t->conn, buf, len);
}

/* ------------------------------------------------------------------ the trunk's limits */

static void release_slot(provider_call_t *c)
{
    sip_trunk_t *t = c->trunk;
    if (c->phase == PH_QUEUED) {
        /* never sent: out of the queue */
        if (c == t->queue_tail)
            t->queue_tail = c->prev;
        list_remove(&t->queue, c);
        list_push(&c->sip->calls, c);
        return;
    }
    if (c->phase != PH_DONE && t->active > 0)
        t->active--;
    if (t->queue != NULL && !uv_is_active((uv_handle_t *)&t->pace))
        uv_timer_start(&t->pace, on_pace, 0, 0);
}

static void pump(sip_trunk_t *t);

static void on_pace(uv_timer_t *timer)
{
    pump(timer->data);
}

/* Sends the trunk's queued INVITEs while its concurrency and rate allow. */
static void pump(sip_trunk_t *t)
{
    provider_sip_t *sip = t->sip;
    uv_timer_stop(&t->pace);
    uint64_t gap = t->conf->cps > 0 ? (uint64_t)(1000.0 / t->conf->cps) : 0;
    while (t->queue_tail != NULL && t->active < t->conf->max_concurrent) {
        uint64_t now = uv_now(sip->base.loop);
        if (t->last_invite_ms != 0 && now < t->last_invite_ms + gap) {
            uv_timer_start(&t->pace, on_pace, t->last_invite_ms + gap - now, 0);
            return;
        }
        provider_call_t *c = t->queue_tail; /* oldest first */
        if (c->cbs->may_dial != NULL && !c->cbs->may_dial(c->arg)) {
            /* out of the queue without taking the trunk's pace or a slot */
            finish(c, OD_FINAL_INTERNAL_ERROR, "dialer: the call's lease was lost while it waited for the trunk");
            continue;
        }
        t->queue_tail = c->prev;
        list_remove(&t->queue, c);
        list_push(&sip->calls, c);
        t->active++;
        t->last_invite_ms = now;
        c->phase = PH_INVITING;
        c->cseq = 1;
        if (send_invite(c, NULL, NULL) != 0) {
            finish(c, OD_FINAL_INTERNAL_ERROR, "the INVITE could not be built");
            continue;
        }
        uv_timer_start(&c->timer, on_ring_timeout, sip->conf.ring_timeout_ms, 0);
    }
    run_osip(sip);
}


/* ------------------------------------------------------------------ the provider interface */

static int sip_dial(provider_t *p, const provider_req_t *req, const provider_cbs_t *cbs, void *arg,
                    provider_call_t **handle, char *errstr, size_t errlen)
{
    provider_sip_t *sip = (provider_sip_t *)p;
    if (req->phone == NULL || strlen(req->phone) >= sizeof(((provider_call_t *)0)->phone)) {
        snprintf(errstr, errlen, "bad phone");
        return -1;
    }
    int i = provider_sip_trunk_select(sip->tconf, sip->nnamed, req->project_id, req->caller_id);
    sip_trunk_t *t = i >= 0 ? &sip->trunks[i] : sip->dflt;
    if (t == NULL) {
        snprintf(errstr, errlen, "sip: no trunk for project %s or caller ID %s, and no default trunk (OUTDIAL_SIP_TRUNK "
                 "is empty)", req->project_id != NULL ? req->project_id : "-",
                 req->caller_id != NULL && req->caller_id[0] != '\0' ? req->caller_id : "-");
        return -1;
    }
    provider_call_t *c = od_calloc(1, sizeof(*c));
    c->sip = sip;
    c->trunk = t;
    c->cbs = cbs;
    c->arg = arg;
    c->phase = PH_QUEUED;
    snprintf(c->phone, sizeof(c->phone), "%s", req->phone);
    snprintf(c->caller, sizeof(c->caller), "%s", req->caller_id != NULL ? req->caller_id : "");
    od_random_hex(c->from_tag, 8);
    char r[21];
    od_random_hex(r, (sizeof(r) - 1) / 2);
    snprintf(c->call_id, sizeof(c->call_id), "%s-%s", r, req->call_id != NULL ? req->call_id : "x");
    c->call_id[sizeof(c->call_id) - 1] = '\0';
    uv_timer_init(sip->base.loop, &c->timer);
    c->timer.data = c;
    list_push(&t->queue, c);
    if (t->queue_tail == NULL)
        t->queue_tail = c;
    sip->seq++;
    *handle = c;
    /* never a callback from inside dial(): the INVITE goes out from the loop */
    if (!uv_is_active((uv_handle_t *)&t->pace))
        uv_timer_start(&t->pace, on_pace, 0, 0);
    od_debug("sip: dialing %s through trunk %s (Call-ID %s)", c->phone, t->conf->name, c->call_id);
    return 0;
}

static void sip_hangup(provider_call_t *c)
{
    c->hangup_asked = 1;
    switch (c->phase) {
    case PH_QUEUED:
        finish(c, OD_FINAL_NO_ANSWER, "hung up before dialing");
        break;
    case PH_INVITING:
        send_cancel(c, 2);
        break;
    case PH_UP:
        send_bye(c);
        break;
    default:
        break;
    }
    run_osip(c->sip);
}

/* Every handle closed by destroy (the provider's, its trunks' and its calls' timers) counts down sip->closing; the last frees it. */
static void free_sip(provider_sip_t *sip)
{
    const char *own[] = {sip->conf.bind, sip->conf.contact_host, sip->conf.media_host};
    for (size_t i = 0; i < OD_ARRAY_SIZE(own); i++)
        free((void *)own[i]);
    provider_sip_trunks_free(sip->tconf, sip->nnamed + 1);
    free(sip->trunks);
    free(sip->dead);
    free(sip);
}

static void closed_one(provider_sip_t *sip)
{
    if (--sip->closing == 0)
        free_sip(sip);
}

/* The provider's own handles (data: the provider). */
static void on_sip_closed(uv_handle_t *h)
{
    closed_one(h->data);
}

/* A trunk's pace timer (data: the trunk, for on_pace). */
static void on_pace_closed(uv_handle_t *h)
{
    closed_one(((sip_trunk_t *)h->data)->sip);
}

static void free_transactions(osip_list_t *l)
{
    while (!osip_list_eol(l, 0)) {
        osip_transaction_t *tr = osip_list_get(l, 0);
        osip_list_remove(l, 0);
        osip_transaction_free2(tr);
    }
}

static void sip_destroy(provider_t *p)
{
    provider_sip_t *sip = (provider_sip_t *)p;
    /* calls in progress are dropped without a callback */
    sip->destroyed = 1;
    sip->closing = 1; /* held until every close below is asked */
    free_transactions(&sip->osip->osip_ict_transactions);
    free_transactions(&sip->osip->osip_nict_transactions);
    for (size_t i = 0; i < sip->ndead; i++)
        osip_transaction_free2(sip->dead[i]);
    sip->ndead = 0;
    osip_release(sip->osip);
    for (size_t i = 0; i <= sip->ntrunks; i++) {
        /* every trunk's queue, then the calls past it */
        provider_call_t *list = i < sip->ntrunks ? sip->trunks[i].queue : sip->calls;
        for (provider_call_t *c = list; c != NULL; c = c->next) {
            sip->closing++; /* on_timer_closed frees the call and counts down */
            if (!uv_is_closing((uv_handle_t *)&c->timer))
                uv_close((uv_handle_t *)&c->timer, on_timer_closed);
        }
        if (i < sip->ntrunks) {
            sip->trunks[i].queue = sip->trunks[i].queue_tail = NULL;
            sip->closing++;
            uv_close((uv_handle_t *)&sip->trunks[i].pace, on_pace_closed);
            if (sip->trunks[i].conn != NULL) {
                sip->closing++; /* on_conn_closed counts down */
                conn_close(sip->trunks[i].conn);
            }
        }
    }
    sip->calls = NULL;
    sip->closing += 2;
    uv_close((uv_handle_t *)&sip->udp, on_sip_closed);
    uv_close((uv_handle_t *)&sip->tick, on_sip_closed);
    closed_one(sip);
}

static const provider_media_t *sip_media(provider_call_t *c)
{
    if (c->phase != PH_UP)
        return NULL;
    c->media = (provider_media_t){c->sip->conf.media_host, (int)c->sip->conf.media_port, c->media_host,
                                  c->media_port, c->codec};
    return &c->media;
}

static const provider_ops_t sip_ops = {"sip", sip_dial, sip_hangup, sip_media, sip_destroy};

int provider_sip_port(const provider_t *p)
{
    return ((const provider_sip_t *)p)->local_port;
}

static char **dup_list(char *const *list, size_t n)
{
    char **out = od_calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        out[i] = od_strdup(list[i]);
    return out;
}

/* The provider's own copy of a trunk's settings: the caller's may not outlive provider_sip_new(). */
static void trunk_copy(provider_sip_trunk_t *dst, const provider_sip_trunk_t *src)
{
    *dst = *src;
    dst->name = od_strdup(src->name);
    dst->address = od_strdup(src->address != NULL ? src->address : "");
    dst->username = od_strdup(src->username != NULL ? src->username : "");
    dst->password = od_strdup(src->password != NULL ? src->password : "");
    dst->realm = od_strdup(src->realm != NULL ? src->realm : "");
    dst->projects = dup_list(src->projects, src->nprojects);
    dst->caller_ids = dup_list(src->caller_ids, src->ncaller_ids);
}

/* The trunks: the named ones in the file's order, then the default (OUTDIAL_SIP_TRUNK, unless empty). */
static int make_trunks(provider_sip_t *sip, const provider_sip_conf_t *conf, char *errstr, size_t errlen)
{
    sip->nnamed = conf->ntrunks;
    sip->tconf = od_calloc(conf->ntrunks + 1, sizeof(*sip->tconf));
    sip->trunks = od_calloc(conf->ntrunks + 1, sizeof(*sip->trunks));
    for (size_t i = 0; i < conf->ntrunks; i++)
        trunk_copy(&sip->tconf[i], &conf->trunks[i]);
    int has_default = conf->trunk != NULL && conf->trunk[0] != '\0';
    if (has_default) {
        provider_sip_trunk_t d = {.name = "default", .address = conf->trunk, .tcp = conf->tcp, .username = conf->username,
                                  .password = conf->password, .realm = conf->realm, .cps = conf->cps,
                                  .max_concurrent = conf->max_concurrent};
        trunk_copy(&sip->tconf[conf->ntrunks], &d);
    }
    if (!has_default && conf->ntrunks == 0) {
        snprintf(errstr, errlen, "no SIP trunk: OUTDIAL_SIP_TRUNK is empty and there is no OUTDIAL_SIP_TRUNKS_FILE");
        return -1;
    }
    sip->ntrunks = conf->ntrunks + (has_default ? 1 : 0);
    for (size_t i = 0; i < sip->ntrunks; i++) {
        sip_trunk_t *t = &sip->trunks[i];
        t->sip = sip;
        t->conf = &sip->tconf[i];
        if (provider_sip__hostport(t->conf->address, 5060, &t->addr, NULL, 0, NULL) != 0) {
            if (i == conf->ntrunks)
                snprintf(errstr, errlen, "OUTDIAL_SIP_TRUNK \"%s\" is not an IP address and port", t->conf->address);
            else
                snprintf(errstr, errlen, "sip trunk \"%s\": address \"%s\" is not an IP address and port",
                         t->conf->name, t->conf->address);
            return -1;
        }
    }
    sip->dflt = has_default ? &sip->trunks[conf->ntrunks] : NULL;
    return 0;
}

/* One line per trunk at start: never its password. */
static void log_trunk(const sip_trunk_t *t)
{
    const provider_sip_trunk_t *tc = t->conf;
    od_info("sip: trunk %s at %s (%s), %.1f calls/s, at most %lld at once, %s, selects %zu projects and %zu caller IDs%s",
            tc->name, tc->address, tc->tcp ? "tcp" : "udp; tcp over 1300 bytes", tc->cps, (long long)tc->max_concurrent,
            tc->username[0] ? "digest credentials" : "no credentials", tc->nprojects, tc->ncaller_ids,
            t == t->sip->dflt ? " (and every call no other trunk selects)" : "");
}

provider_t *provider_sip_new(uv_loop_t *loop, const provider_sip_conf_t *conf, char *errstr, size_t errlen)
{
    provider_sip_t *sip = od_calloc(1, sizeof(*sip));
    sip->base.ops = &sip_ops;
    sip->base.loop = loop;
    sip->conf = *conf;
    /* the strings are the provider's own: the caller's may not outlive this call; the trunks' are in sip->tconf */
    const char **own[] = {&sip->conf.bind, &sip->conf.contact_host, &sip->conf.media_host};
    for (size_t i = 0; i < OD_ARRAY_SIZE(own); i++)
        *own[i] = od_strdup(*own[i] != NULL ? *own[i] : "");
    sip->conf.trunk = sip->conf.username = sip->conf.password = sip->conf.realm = NULL;
    sip->conf.trunks = NULL;
    struct sockaddr_storage bind_addr;
    char bind_host[64];
    int bind_port;
    if (make_trunks(sip, conf, errstr, errlen) != 0)
        goto fail;
    if (provider_sip__hostport(sip->conf.bind, 0, &bind_addr, bind_host, sizeof(bind_host), &bind_port) != 0) {
        snprintf(errstr, errlen, "OUTDIAL_SIP_BIND \"%s\" is not an IP address and port", conf->bind);
        goto fail;
    }
    /* osip's own trace goes to stderr, unstructured: off (a peer's garbage is counted by us instead) */
    for (int lvl = TRACE_LEVEL0; lvl < END_TRACE_LEVEL; lvl++)
        osip_trace_disable_level((osip_trace_level_t)lvl);
    if (osip_init(&sip->osip) != 0) {
        snprintf(errstr, errlen, "osip_init failed");
        goto fail;
    }
    osip_set_cb_send_message(sip->osip, on_send);
    osip_set_message_callback(sip->osip, OSIP_ICT_STATUS_1XX_RECEIVED, on_ict_1xx);
    osip_set_message_callback(sip->osip, OSIP_ICT_STATUS_2XX_RECEIVED, on_ict_2xx);
    osip_set_message_callback(sip->osip, OSIP_ICT_STATUS_2XX_RECEIVED_AGAIN, on_ict_2xx);
    for (int t = OSIP_ICT_STATUS_3XX_RECEIVED; t <= OSIP_ICT_STATUS_6XX_RECEIVED; t++)
        osip_set_message_callback(sip->osip, t, on_ict_final);
    osip_set_message_callback(sip->osip, OSIP_ICT_STATUS_TIMEOUT, on_ict_timeout);
    for (int t = OSIP_NICT_STATUS_2XX_RECEIVED; t <= OSIP_NICT_STATUS_6XX_RECEIVED; t++)
        if (t != OSIP_NICT_STATUS_2XX_RECEIVED_AGAIN)
            osip_set_message_callback(sip->osip, t, on_nict_final);
    osip_set_message_callback(sip->osip, OSIP_NICT_STATUS_TIMEOUT, on_nict_timeout);
    osip_set_kill_transaction_callback(sip->osip, OSIP_ICT_KILL_TRANSACTION, on_kill);
    osip_set_kill_transaction_callback(sip->osip, OSIP_NICT_KILL_TRANSACTION, on_kill);
    osip_set_transport_error_callback(sip->osip, OSIP_ICT_TRANSPORT_ERROR, on_transport_error);
    osip_set_transport_error_callback(sip->osip, OSIP_NICT_TRANSPORT_ERROR, on_transport_error);

    int rc;
    if ((rc = uv_udp_init(loop, &sip->udp)) != 0) {
        snprintf(errstr, errlen, "SIP socket: %s", uv_strerror(rc));
        osip_release(sip->osip);
        goto fail;
    }
    if ((rc = uv_udp_bind(&sip->udp, (const struct sockaddr *)&bind_addr, 0)) != 0) {
        snprintf(errstr, errlen, "SIP socket on %s: %s", conf->bind, uv_strerror(rc));
        osip_release(sip->osip);
        /* the loop knows the handle now: the memory goes once it is closed */
        sip->closing = 1;
        sip->udp.data = sip;
        uv_close((uv_handle_t *)&sip->udp, on_sip_closed);
        return NULL;
    }
    struct sockaddr_storage name;
    int namelen = sizeof(name);
    uv_udp_getsockname(&sip->udp, (struct sockaddr *)&name, &namelen);
    sip->local_port = ntohs(((struct sockaddr_in *)&name)->sin_port);
    snprintf(sip->local_host, sizeof(sip->local_host), "%s",
             sip->conf.contact_host[0] ? sip->conf.contact_host : strcmp(bind_host, "0.0.0.0") ? bind_host : "127.0.0.1");
    sip->udp.data = sip;
    uv_udp_recv_start(&sip->udp, on_alloc, on_datagram);
    uv_timer_init(loop, &sip->tick);
    sip->tick.data = sip;
    uv_timer_start(&sip->tick, on_tick, 10, 10);
    uv_unref((uv_handle_t *)&sip->tick);
    od_info("sip: local %s:%d, %zu trunks, ring timeout %lld ms, T1 %lld ms", sip->local_host, sip->local_port,
            sip->ntrunks, (long long)conf->ring_timeout_ms, (long long)conf->t1_ms);
    for (size_t i = 0; i < sip->ntrunks; i++) {
        sip_trunk_t *t = &sip->trunks[i];
        uv_timer_init(loop, &t->pace);
        t->pace.data = t;
        log_trunk(t);
    }
    return &sip->base;
fail:
    free_sip(sip);
    return NULL;
}
