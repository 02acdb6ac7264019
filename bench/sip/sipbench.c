/*
 * bench/sip: ONE sip provider (services/dialer/provider_sip.c, the code a
 * dialer runs) against sipp's built-in UAS on loopback. New calls at RATE
 * per second for SECONDS; each answered call is held HOLD seconds, then
 * hung up by us (BYE). Reports the sustained answered calls per second, the
 * peak of established dialogs at once, the memory per dialog (RSS growth
 * divided by the peak), and the CPU the process took.
 *
 *   outdial-sipbench TRUNK_IP:PORT RATE SECONDS HOLD
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

#include "provider.h"

typedef struct bcall {
    provider_call_t *h;
    int answered;
} bcall_t;

static provider_t *prov;
static uv_loop_t *loop;
static double rate;
static uint64_t t0, dial_ms, last_answer_ms;
static long dialed, answered, ended, completed, failed, up, peak_up;
static long rss_start_kb, rss_peak_kb;

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kb;
}

static void cb_ringing(void *arg)
{
    (void)arg;
}

static void cb_answered(void *arg)
{
    ((bcall_t *)arg)->answered = 1;
    answered++;
    last_answer_ms = uv_now(loop);
    if (++up > peak_up) {
        peak_up = up;
        long r = rss_kb();
        if (r > rss_peak_kb)
            rss_peak_kb = r;
    }
}

static void cb_machine(void *arg)
{
    (void)arg;
}

static void cb_ended(void *arg, const provider_result_t *res)
{
    bcall_t *c = arg;
    if (c->answered)
        up--;
    ended++;
    if (res->final_state == OD_FINAL_COMPLETED)
        completed++;
    else if (failed++ < 5)
        fprintf(stderr, "failed: %s\n", res->detail);
    free(c);
}

static const provider_cbs_t cbs = {cb_ringing, cb_answered, cb_machine, cb_ended, NULL};

static void on_dial_tick(uv_timer_t *t)
{
    uint64_t now = uv_now(loop);
    long due = (long)((double)(now - t0) * rate / 1000.0);
    if (now - t0 >= dial_ms) {
        uv_timer_stop(t);
        due = (long)(dial_ms * rate / 1000.0);
    }
    char errstr[128], phone[24], id[40];
    while (dialed < due) {
        bcall_t *c = calloc(1, sizeof(*c));
        snprintf(phone, sizeof(phone), "+3461%07ld", dialed % 10000000);
        snprintf(id, sizeof(id), "bench-%ld", dialed);
        provider_req_t req = {.call_id = id, .phone = phone, .scenario = "bench", .caller_id = "+15005550006"};
        if (prov->ops->dial(prov, &req, &cbs, c, &c->h, errstr, sizeof(errstr)) != 0) {
            fprintf(stderr, "dial: %s\n", errstr);
            exit(1);
        }
        dialed++;
    }
}

static void on_check(uv_timer_t *t)
{
    if (dialed > 0 && ended == dialed && uv_now(loop) - t0 >= dial_ms) {
        uv_timer_stop(t);
        uv_stop(loop);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s TRUNK_IP:PORT RATE SECONDS HOLD [udp|tcp]\n", argv[0]);
        return 2;
    }
    rate = atof(argv[2]);
    dial_ms = (uint64_t)(atof(argv[3]) * 1000);
    int64_t hold_ms = (int64_t)(atof(argv[4]) * 1000);
    loop = uv_default_loop();
    char errstr[256];
    provider_sip_conf_t conf = {.trunk = argv[1], .bind = "127.0.0.1:0", .contact_host = "", .username = "",
                                .password = "", .realm = "", .media_host = "127.0.0.1", .media_port = 40000,
                                .cps = rate * 2, .max_concurrent = 1000000, .ring_timeout_ms = 30000,
                                .max_talk_ms = hold_ms, .t1_ms = 500, .tcp = argc == 6 && strcmp(argv[5], "tcp") == 0};
    prov = provider_sip_new(loop, &conf, errstr, sizeof(errstr));
    if (prov == NULL) {
        fprintf(stderr, "%s\n", errstr);
        return 1;
    }
    rss_start_kb = rss_kb();
    uv_timer_t dial, check;
    uv_timer_init(loop, &dial);
    uv_timer_init(loop, &check);
    uv_update_time(loop);
    t0 = uv_now(loop);
    uv_timer_start(&dial, on_dial_tick, 0, 5);
    uv_timer_start(&check, on_check, 100, 100);
    uv_run(loop, UV_RUN_DEFAULT);
    uint64_t wall = uv_now(loop) - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    double first_answers_s = (double)dial_ms / 1000.0;
    printf("dialed %ld, answered %ld, completed %ld, failed %ld in %.1f s\n", dialed, answered, completed, failed,
           wall / 1000.0);
    printf("new calls answered per second over the dialing window: %.1f (asked %.1f)\n",
           (double)answered / first_answers_s, rate);
    printf("peak established dialogs at once: %ld\n", peak_up);
    printf("RSS: %ld kB at start, %ld kB at the peak: %.2f kB per established dialog\n", rss_start_kb, rss_peak_kb,
           peak_up > 0 ? (double)(rss_peak_kb - rss_start_kb) / (double)peak_up : 0.0);
    printf("CPU: %.2f s for %.1f s of wall time (%.0f %% of one core); %.2f ms per call\n", cpu, wall / 1000.0,
           100.0 * cpu / (wall / 1000.0), dialed ? 1000.0 * cpu / (double)dialed : 0.0);
    (void)last_answer_ms;
    return failed == 0 && completed == dialed ? 0 : 1;
}
