/* The sim provider: its digit table, the time math, and real calls on a libuv loop. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "od/core.h"
#include "od_test.h"
#include "provider.h"

static const struct {
    od_final_state_t final_state;
    od_outcome_t outcome;
    int goal;
    const char *callbacks; /* R ringing, A answered, M machine detected, E ended */
    uint64_t setup, ring, talk;
} expect[10] = {
    {OD_FINAL_COMPLETED, OD_OUTCOME_SUCCESS, 1, "RAE", 500, 4000, 25000},
    {OD_FINAL_COMPLETED, OD_OUTCOME_SUCCESS, 0, "RAE", 500, 4000, 25000},
    {OD_FINAL_COMPLETED, OD_OUTCOME_MIDDLE, 0, "RAE", 500, 4000, 25000},
    {OD_FINAL_COMPLETED, OD_OUTCOME_SPAM, 0, "RAE", 500, 4000, 25000},
    {OD_FINAL_NO_ANSWER, OD_OUTCOME_NONE, -1, "RE", 500, 30000, 0},
    {OD_FINAL_BUSY, OD_OUTCOME_NONE, -1, "E", 1500, 0, 0},
    {OD_FINAL_VOICEMAIL_DETECTED, OD_OUTCOME_NONE, -1, "RAME", 500, 5000, 3000},
    {OD_FINAL_INVALID_NUMBER, OD_OUTCOME_NONE, -1, "E", 800, 0, 0},
    {OD_FINAL_CALLER_ID_UNAUTHORIZED, OD_OUTCOME_NONE, -1, "E", 800, 0, 0},
    {OD_FINAL_PROVIDER_ERROR, OD_OUTCOME_NONE, -1, "E", 1200, 0, 0},
};

static void test_table(void)
{
    for (int d = 0; d < 10; d++) {
        char phone[16];
        snprintf(phone, sizeof(phone), "+1415555012%d", d);
        provider_sim_plan_t p;
        provider_sim_plan(phone, NULL, 1.0, &p);
        CHECK(p.digit == d);
        CHECK(p.final_state == expect[d].final_state);
        CHECK(p.outcome == expect[d].outcome);
        CHECK(p.goal_completed == expect[d].goal);
        CHECK(p.rings == (strchr(expect[d].callbacks, 'R') != NULL));
        CHECK(p.answers == (strchr(expect[d].callbacks, 'A') != NULL));
        CHECK(p.machine == (strchr(expect[d].callbacks, 'M') != NULL));
        CHECK(p.setup_ms == expect[d].setup);
        CHECK(p.ring_ms == expect[d].ring);
        CHECK(p.talk_ms == expect[d].talk);
        CHECK(p.detail != NULL && p.detail[0] != '\0');
    }
    provider_sim_plan_t p;
    provider_sim_plan("", NULL, 1.0, &p);
    CHECK(p.digit == -1 && p.final_state == OD_FINAL_PROVIDER_ERROR);
    provider_sim_plan("+1415555012x", NULL, 1.0, &p);
    CHECK(p.digit == -1 && p.final_state == OD_FINAL_PROVIDER_ERROR);
}

static void test_scale(void)
{
    provider_sim_plan_t p;
    provider_sim_plan("+14155550120", NULL, 0.5, &p);
    CHECK(p.setup_ms == 250 && p.ring_ms == 2000 && p.talk_ms == 12500);
    provider_sim_plan("+14155550124", NULL, 0.001, &p);
    CHECK(p.setup_ms == 1 && p.ring_ms == 30);
    provider_sim_plan("+14155550126", NULL, 2.0, &p);
    CHECK(p.setup_ms == 1000 && p.ring_ms == 10000 && p.talk_ms == 6000);
    provider_sim_plan("+14155550120", NULL, 0, &p);
    CHECK(p.setup_ms == 0 && p.ring_ms == 0 && p.talk_ms == 0);
    provider_sim_plan("+14155550120", NULL, -3, &p);
    CHECK(p.setup_ms == 0 && p.ring_ms == 0 && p.talk_ms == 0);
}

static void test_overrides(void)
{
    provider_sim_plan_t p;
    json_t *m = json_pack("{s:i, s:s}", "sim_ring_ms", 1234, "sim_talk_ms", "250");
    /* absolute ms: the scale does not apply to overrides */
    provider_sim_plan("+14155550120", m, 0.001, &p);
    CHECK(p.ring_ms == 1234 && p.talk_ms == 250 && p.setup_ms == 1);
    /* no answer: the ring override decides when it gives up; talk does not apply */
    provider_sim_plan("+14155550124", m, 1.0, &p);
    CHECK(p.ring_ms == 1234 && p.talk_ms == 0);
    /* voicemail rings (override) but has no conversation (talk override ignored) */
    provider_sim_plan("+14155550126", m, 1.0, &p);
    CHECK(p.ring_ms == 1234 && p.talk_ms == 3000);
    /* busy never rings */
    provider_sim_plan("+14155550125", m, 1.0, &p);
    CHECK(p.ring_ms == 0 && p.talk_ms == 0 && p.setup_ms == 1500);
    json_decref(m);

    m = json_pack("{s:f, s:s}", "sim_ring_ms", 99.6, "sim_talk_ms", "0");
    provider_sim_plan("+14155550121", m, 1.0, &p);
    CHECK(p.ring_ms == 100 && p.talk_ms == 0);
    json_decref(m);

    /* unusable values leave the scaled base times */
    const char *bad[] = {"{\"sim_ring_ms\":-5,\"sim_talk_ms\":\"abc\"}", "{\"sim_ring_ms\":true,\"sim_talk_ms\":\"12x\"}",
                         "{\"sim_ring_ms\":null,\"sim_talk_ms\":\"\"}", "[1,2]"};
    for (size_t i = 0; i < OD_ARRAY_SIZE(bad); i++) {
        m = json_loads(bad[i], 0, NULL);
        CHECK(m != NULL);
        provider_sim_plan("+14155550120", m, 1.0, &p);
        CHECK(p.ring_ms == 4000 && p.talk_ms == 25000);
        json_decref(m);
    }
    /* huge overrides are capped at a day */
    m = json_pack("{s:f}", "sim_ring_ms", 1e30);
    provider_sim_plan("+14155550120", m, 1.0, &p);
    CHECK(p.ring_ms == 24ULL * 3600 * 1000);
    json_decref(m);
}

/* ---- real calls on a loop ---- */

typedef struct tcall {
    char id[37];
    char seq[8];
    int n;
    provider_result_t res;
    char detail[128];
    provider_call_t *h;
    int hangup_on; /* hang up from inside this callback ('R' or 'A'), or 0 */
    provider_t *p;
    od_call_recording_t rec; /* the recording ended() reported, if recorded */
    int recorded;
} tcall_t;

static void rec(tcall_t *c, char what)
{
    if (c->n < (int)sizeof(c->seq) - 1)
        c->seq[c->n++] = what;
    if (c->hangup_on == what)
        c->p->ops->hangup(c->h);
}

static void cb_ringing(void *arg) { rec(arg, 'R'); }
static void cb_answered(void *arg) { rec(arg, 'A'); }
static void cb_machine(void *arg) { rec(arg, 'M'); }
static void cb_ended(void *arg, const provider_result_t *res)
{
    tcall_t *c = arg;
    rec(c, 'E');
    c->res = *res;
    snprintf(c->detail, sizeof(c->detail), "%s", res->detail);
    c->res.detail = c->detail;
    c->recorded = res->recording != NULL;
    if (c->recorded)
        c->rec = *res->recording;
    c->res.recording = NULL;
    c->h = NULL;
}

static const provider_cbs_t cbs = {cb_ringing, cb_answered, cb_machine, cb_ended, NULL};

static int dial(provider_t *p, tcall_t *c, const char *phone, const char *metadata)
{
    char err[128];
    od_uuid7(c->id);
    c->p = p;
    json_t *m = metadata != NULL ? json_loads(metadata, 0, NULL) : NULL;
    provider_req_t req = {.call_id = c->id, .phone = phone, .scenario = "appointment_reminder",
                          .caller_id = "+14155550000", .disclosure = "This is an AI assistant.", .metadata = m};
    int rc = p->ops->dial(p, &req, &cbs, c, &c->h, err, sizeof(err));
    json_decref(m);
    return rc;
}

static off_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

static void test_loop(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char log[] = "/tmp/od_test_sim_XXXXXX";
    int fd = mkstemp(log);
    CHECK(fd >= 0);
    close(fd);

    char err[256];
    provider_t *p = provider_sim_new(&loop, 0.0005, log, err, sizeof(err));
    CHECK(p != NULL);
    CHECK_STR(p->ops->name, "sim");

    tcall_t calls[10];
    memset(calls, 0, sizeof(calls));
    for (int d = 0; d < 10; d++) {
        char phone[16];
        snprintf(phone, sizeof(phone), "+1415555012%d", d);
        off_t before = file_size(log);
        CHECK(dial(p, &calls[d], phone, NULL) == 0);
        /* the dial is logged when placed, before any callback */
        CHECK(calls[d].n == 0);
        CHECK(file_size(log) == before + 24 + 1 + 36 + 1 + 12 + 1);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int d = 0; d < 10; d++) {
        tcall_t *c = &calls[d];
        CHECK_STR(c->seq, expect[d].callbacks);
        CHECK(c->res.final_state == expect[d].final_state);
        CHECK(c->res.outcome == expect[d].outcome);
        CHECK(c->res.goal_completed == expect[d].goal);
        if (expect[d].final_state == OD_FINAL_COMPLETED)
            CHECK(c->res.talk_ms >= 12 && c->res.talk_ms < 1000); /* 25 s × 0.0005 = 12.5 ms */
        else
            CHECK(c->res.talk_ms == 0);
        /* the callee ends a completed call when its talk time is over */
        CHECK(c->res.hangup_by == (expect[d].final_state == OD_FINAL_COMPLETED ? OD_HANGUP_CALLEE : OD_HANGUP_UNKNOWN));
    }

    /* the dial log: one line per dial, "<rfc3339> <call_id> <phone>" */
    FILE *fp = fopen(log, "r");
    CHECK(fp != NULL);
    char line[256];
    int lines = 0;
    while (fp != NULL && fgets(line, sizeof(line), fp) != NULL) {
        char ts[64], id[64], phone[64];
        CHECK(sscanf(line, "%63s %63s %63s", ts, id, phone) == 3);
        CHECK(strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
        CHECK(lines < 10 && strcmp(id, calls[lines].id) == 0);
        CHECK(phone[strlen(phone) - 1] == '0' + lines);
        lines++;
    }
    CHECK(lines == 10);
    if (fp != NULL)
        fclose(fp);

    /* metadata overrides on a real call: a long ring keeps it in flight, a hangup ends it */
    tcall_t ring = {0}, talk = {0}, vm = {0};
    ring.hangup_on = 'R';
    CHECK(dial(p, &ring, "+14155550120", "{\"sim_ring_ms\":600000}") == 0);
    talk.hangup_on = 'A';
    CHECK(dial(p, &talk, "+14155550123", "{\"sim_ring_ms\":\"1\",\"sim_talk_ms\":600000}") == 0);
    vm.hangup_on = 'A';
    CHECK(dial(p, &vm, "+14155550126", "{\"sim_ring_ms\":0}") == 0);
    uint64_t t0 = uv_now(&loop);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_now(&loop) - t0 < 5000);
    CHECK_STR(ring.seq, "RE");
    CHECK(ring.res.final_state == OD_FINAL_NO_ANSWER && ring.res.talk_ms == 0);
    CHECK_STR(talk.seq, "RAE");
    CHECK(talk.res.final_state == OD_FINAL_COMPLETED && talk.res.outcome == OD_OUTCOME_SPAM);
    CHECK(talk.res.talk_ms < 1000);
    CHECK(strstr(talk.detail, "hung up") != NULL && talk.res.hangup_by == OD_HANGUP_US);
    CHECK_STR(vm.seq, "RAE");
    CHECK(vm.res.final_state == OD_FINAL_VOICEMAIL_DETECTED);

    /* destroy with a call in progress: no callback any more, handles closed */
    tcall_t left = {0};
    CHECK(dial(p, &left, "+14155550121", "{\"sim_ring_ms\":600000}") == 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    p->ops->destroy(p);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(left.n <= 1 && (left.n == 0 || left.seq[0] == 'R'));
    CHECK(uv_loop_close(&loop) == 0);
    CHECK(file_size(log) == 14 * (24 + 1 + 36 + 1 + 12 + 1)); /* every dial, one line each */
    unlink(log);

    /* a dial log that can't be opened is a set-up error */
    CHECK(provider_sim_new(uv_default_loop(), 1.0, "/nonexistent/dir/dials.log", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "dial log") != NULL);
    /* no dial log at all */
    p = provider_sim_new(uv_default_loop(), 1.0, NULL, err, sizeof(err));
    CHECK(p != NULL);
    p->ops->destroy(p);
    CHECK(uv_loop_close(uv_default_loop()) == 0);
}

/* metadata sim_recording: answered calls report a recording of the kind asked for */
static void test_recordings(void)
{
    provider_sim_plan_t p;
    static const struct {
        const char *metadata, *phone;
        od_recording_kind_t kind;
    } plans[] = {
        {"{\"sim_recording\":true}", "+14155550120", OD_RECORDING_URL},
        {"{\"sim_recording\":\"1\"}", "+14155550123", OD_RECORDING_URL}, /* a CSV column's text */
        {"{\"sim_recording\":\"object_key\"}", "+14155550126", OD_RECORDING_OBJECT_KEY},
        {"{\"sim_recording\":true}", "+14155550124", 0}, /* no answer: nothing recorded */
        {"{\"sim_recording\":false}", "+14155550120", 0},
        {"{\"sim_recording\":\"yes please\"}", "+14155550120", 0},
        {"{}", "+14155550120", 0},
    };
    for (size_t i = 0; i < OD_ARRAY_SIZE(plans); i++) {
        json_t *m = json_loads(plans[i].metadata, 0, NULL);
        provider_sim_plan(plans[i].phone, m, 1.0, &p);
        CHECK(p.recording == plans[i].kind);
        json_decref(m);
    }

    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    provider_t *sim = provider_sim_new(&loop, 0.0005, NULL, err, sizeof(err));
    tcall_t url = {0}, key = {0}, none = {0}, cut = {0};
    CHECK(dial(sim, &url, "+14155550120", "{\"sim_recording\":true,\"sim_talk_ms\":40}") == 0);
    CHECK(dial(sim, &key, "+14155550126", "{\"sim_recording\":\"object_key\"}") == 0);
    CHECK(dial(sim, &none, "+14155550124", "{\"sim_recording\":true}") == 0);
    cut.hangup_on = 'R'; /* hung up while ringing: never answered, nothing recorded */
    CHECK(dial(sim, &cut, "+14155550121", "{\"sim_recording\":true}") == 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(url.recorded && url.rec.kind == OD_RECORDING_URL);
    char want[128];
    snprintf(want, sizeof(want), "https://sim.outdial.invalid/recordings/%s.wav", url.id);
    CHECK_STR(url.rec.ref, want);
    CHECK(url.rec.duration_ms >= 40 && url.rec.duration_ms < 1000);
    CHECK(strlen(url.rec.sha256) == 64 && strspn(url.rec.sha256, "0123456789abcdef") == 64);
    CHECK(key.recorded && key.rec.kind == OD_RECORDING_OBJECT_KEY);
    snprintf(want, sizeof(want), "sim/recordings/%s.wav", key.id);
    CHECK_STR(key.rec.ref, want);
    CHECK(strcmp(key.rec.sha256, url.rec.sha256) != 0); /* one per call */
    CHECK(!none.recorded && none.res.final_state == OD_FINAL_NO_ANSWER);
    CHECK(!cut.recorded && cut.res.final_state == OD_FINAL_NO_ANSWER);
    sim->ops->destroy(sim);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&loop) == 0);
}

int main(void)
{
    test_table();
    test_scale();
    test_overrides();
    test_loop();
    test_recordings();
    return od_test_result("test_sim");
}
