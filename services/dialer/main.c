/* outdial-dialer: claims dispatched calls, dials them, reports their events. */
#include <stdio.h>

#include "dialer.h"
#include "od/config.h"
#include "od/core.h"

static const char usage[] =
    "usage: outdial-dialer [--help]\n"
    "Consumes calls.dispatch, claims each call in PostgreSQL (at most once), dials it\n"
    "through the provider and sends its events to calls.events.\n";

static const od_conf_item_t conf_table[] = {
    OD_COMMON_CONF(dialer_conf_t, 9102),
    OD_CONF_INT(dialer_conf_t, max_calls, "OUTDIAL_DIALER_MAX_CALLS", "100", 1, 100000,
                "calls handled at once (from receipt of the dispatch to the lease release); "
                "consumption pauses at the limit"),
    OD_CONF_INT(dialer_conf_t, lease_s, "OUTDIAL_DIALER_LEASE_S", "30", 3, 3600,
                "lease of a claimed call, renewed every third of it; a dialer silent that long "
                "has its calls ended as internal_error"),
    OD_CONF_INT(dialer_conf_t, clock_offset_s, "OUTDIAL_DIALER_TEST_CLOCK_OFFSET_S", "0", -400000000, 400000000,
                "tests only: seconds added to the clock on which the claim reads calling windows again (as "
                "OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S for the scheduler); leave 0 in production"),
    OD_CONF_STR(dialer_conf_t, dialer_id, "OUTDIAL_DIALER_ID", "",
                "this dialer's id in the claims (empty: <hostname>-<pid>)"),
    OD_CONF_STR(dialer_conf_t, provider, "OUTDIAL_DIALER_PROVIDER", "sim", "telephony provider: sim or sip"),
    OD_CONF_DOUBLE(dialer_conf_t, sim_scale, "OUTDIAL_SIM_TIME_SCALE", "1.0", 0, 1000,
                   "sim: factor on the realistic ring and talk times (0 = immediate)"),
    OD_CONF_STR(dialer_conf_t, sim_dial_log, "OUTDIAL_SIM_DIAL_LOG", NULL,
                "sim: file that gets one line \"<time> <call_id> <phone>\" per dial (empty: none)"),
    OD_CONF_STR(dialer_conf_t, sip_trunk, "OUTDIAL_SIP_TRUNK", "127.0.0.1:5060",
                "sip: the default trunk's ip:port (UDP); empty: no default trunk (calls no named trunk selects fail)"),
    OD_CONF_STR(dialer_conf_t, sip_trunks_file, "OUTDIAL_SIP_TRUNKS_FILE", "",
                "sip: JSON file of named trunks chosen by caller ID or project (docs/sip.md, Trunks; empty: none)"),
    OD_CONF_STR(dialer_conf_t, sip_transport, "OUTDIAL_SIP_TRANSPORT", "udp",
                "sip: the default trunk's transport: udp (requests over 1300 bytes go over TCP, RFC 3261 18.1.1) "
                "or tcp (all of them)"),
    OD_CONF_STR(dialer_conf_t, sip_bind, "OUTDIAL_SIP_BIND", "0.0.0.0:0", "sip: local ip:port of the SIP socket"),
    OD_CONF_STR(dialer_conf_t, sip_contact_host, "OUTDIAL_SIP_CONTACT_HOST", "",
                "sip: address in Via and Contact (empty: the bind address; 127.0.0.1 for 0.0.0.0)"),
    OD_CONF_STR(dialer_conf_t, sip_username, "OUTDIAL_SIP_USERNAME", "", "sip: digest username for the default trunk"),
    OD_CONF_STR(dialer_conf_t, sip_password, "OUTDIAL_SIP_PASSWORD", "", "sip: digest password (never logged)"),
    OD_CONF_STR(dialer_conf_t, sip_password_file, "OUTDIAL_SIP_PASSWORD_FILE", "",
                "sip: file holding the digest password (instead of OUTDIAL_SIP_PASSWORD)"),
    OD_CONF_STR(dialer_conf_t, sip_realm, "OUTDIAL_SIP_REALM", "", "sip: digest realm (empty: the challenge's)"),
    OD_CONF_STR(dialer_conf_t, sip_media, "OUTDIAL_SIP_MEDIA", "127.0.0.1:40000",
                "sip: the conversation engine's media ip:port offered in the SDP"),
    OD_CONF_DOUBLE(dialer_conf_t, sip_cps, "OUTDIAL_SIP_CPS", "10", 0.01, 100000, "sip: INVITEs per second to the default trunk"),
    OD_CONF_INT(dialer_conf_t, sip_max_concurrent, "OUTDIAL_SIP_MAX_CONCURRENT", "100", 1, 1000000,
                "sip: calls at once on the default trunk (more wait their turn)"),
    OD_CONF_INT(dialer_conf_t, sip_ring_timeout_s, "OUTDIAL_SIP_RING_TIMEOUT_S", "30", 1, 600,
                "sip: INVITE unanswered this long: CANCEL, no_answer"),
    OD_CONF_INT(dialer_conf_t, sip_max_talk_s, "OUTDIAL_SIP_MAX_TALK_S", "3600", 0, 86400,
                "sip: answered calls are hung up (BYE) after this long (0: never)"),
    OD_CONF_INT(dialer_conf_t, sip_t1_ms, "OUTDIAL_SIP_T1_MS", "500", 10, 10000,
                "sip: RFC 3261 T1 (retransmissions start at T1; Timers B and F are 64 x T1)"),
    OD_CONF_STR(dialer_conf_t, engine_url, "OUTDIAL_ENGINE_URL", "",
                "the conversation engine's base URL (proto/engine.md); sessions open at <url>/v1/sessions "
                "(empty: none; the sim plays the engine)"),
    OD_CONF_STR(dialer_conf_t, engine_token, "OUTDIAL_ENGINE_TOKEN", "",
                "Bearer token sent to the conversation engine (never logged)"),
    OD_CONF_STR(dialer_conf_t, engine_callback_url, "OUTDIAL_ENGINE_CALLBACK_URL", "",
                "base URL at which the engine reaches this dialer's HTTP port for reports "
                "(empty: http://<OUTDIAL_HTTP_HOST, 127.0.0.1 for 0.0.0.0>:<port>)"),
    OD_CONF_INT(dialer_conf_t, engine_timeout_ms, "OUTDIAL_ENGINE_TIMEOUT_MS", "3000", 100, 60000,
                "each request to the conversation engine (no answer in time: a session not opened is "
                "internal_error; an end not confirmed ends without outcome)"),
};

int main(int argc, char **argv)
{
    static dialer_conf_t conf;
    static od_svc_t svc; /* static: what hangs off it stays reachable for LeakSanitizer after main returns */
    int rc = od_svc_init(&svc, "outdial-dialer", argc, argv, usage, conf_table, OD_ARRAY_SIZE(conf_table), &conf,
                         &conf.common, 4096);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    if (dialer_new(&svc, &conf) == NULL)
        return 1;
    return od_svc_run(&svc);
}
