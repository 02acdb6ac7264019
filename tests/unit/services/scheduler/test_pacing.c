/* The scheduler's in-memory queues (services/scheduler/pacing.c) and the GCRA
 * it is paced by (od_gcra), driven by an injected clock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "od/gcra.h"
#include "od_test.h"
#include "pacing.h"

#define MIN_US (60 * 1000000LL)

static const char *P1 = "00000000-0000-7000-8000-000000000001";
static const char *P2 = "00000000-0000-7000-8000-000000000002";
static const char *BA = "0000000a-0000-7000-8000-00000000000a";
static const char *BB = "0000000b-0000-7000-8000-00000000000b";

/* call ids that say where they belong: lane letter + number */
static const char *cid(char lane, int n)
{
    static char buf[8][37];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 37, "%c%07d-0000-7000-8000-000000000000", lane, n);
    return b;
}

/* what od_dispatch does with the offered ids: the project GCRA (no burst) lets the
 * first go when allowed, the others wait; returns the dispatched call or NULL */
static pacing_call_t *fake_dispatch(pacing_t *pc, pacing_proj_t *proj, od_gcra_t *g, int64_t now_ms, int per_min,
                                    pacing_call_t **calls, size_t n)
{
    pacing_call_t *sent = NULL;
    od_gcra_result_t r = od_gcra_take(g, now_ms * 1000, per_min, MIN_US, 1);
    for (size_t i = 0; i < n; i++) {
        if (i == 0 && r.allowed) {
            pacing_sending(pc, calls[i]);
            sent = calls[i];
        } else {
            pacing_put_back(pc, calls[i]);
        }
    }
    pacing_release(pc, proj, od_gcra_next_us(g, now_ms * 1000, per_min, MIN_US, 1) / 1000);
    return sent;
}

static void test_lane_order(void)
{
    pacing_t *pc = pacing_new();
    CHECK(pacing_add(pc, P1, cid('s', 1), NULL, 300) == 1);
    CHECK(pacing_add(pc, P1, cid('s', 2), NULL, 100) == 1);
    CHECK(pacing_add(pc, P1, cid('s', 3), "", 200) == 1);
    CHECK(pacing_add(pc, P1, cid('s', 4), NULL, 100) == 1); /* same due as s2: arrival order */
    CHECK(pacing_add(pc, P1, cid('s', 2), NULL, 50) == 0);  /* known */
    char upper[37];
    strcpy(upper, cid('s', 3));
    upper[0] = 'S';
    CHECK(pacing_add(pc, P1, upper, NULL, 50) == 0); /* ids are case-insensitive */
    CHECK(pacing_count(pc) == 4 && pacing_queued(pc) == 4);
    CHECK(pacing_next_wake(pc) == 100);

    pacing_proj_t *proj = pacing_next_ready(pc, 1000);
    CHECK(proj != NULL && strcmp(proj->id, P1) == 0);
    CHECK(pacing_next_ready(pc, 1000) == NULL); /* busy until released */
    pacing_call_t *out[10];
    size_t n = pacing_take(pc, proj, 1000, 10, out);
    CHECK(n == 4);
    CHECK_STR(out[0]->id, cid('s', 2));
    CHECK_STR(out[1]->id, cid('s', 4));
    CHECK_STR(out[2]->id, cid('s', 3));
    CHECK_STR(out[3]->id, cid('s', 1));
    CHECK(pacing_queued(pc) == 0 && pacing_count(pc) == 4);
    CHECK(pacing_next_wake(pc) == INT64_MAX);

    /* "wait" puts them back in the same order, whatever order they come back in */
    for (size_t i = n; i-- > 0;)
        pacing_put_back(pc, out[i]);
    pacing_release(pc, proj, 0);
    CHECK(pacing_next_wake(pc) == 100);
    proj = pacing_next_ready(pc, 1000);
    n = pacing_take(pc, proj, 1000, 2, out); /* max respected */
    CHECK(n == 2);
    CHECK_STR(out[0]->id, cid('s', 2));
    CHECK_STR(out[1]->id, cid('s', 4));
    pacing_forget(pc, out[0]); /* gone */
    pacing_sending(pc, out[1]);
    pacing_forget(pc, out[1]); /* delivered */
    pacing_release(pc, proj, 0);
    CHECK(pacing_count(pc) == 2 && pacing_find(pc, cid('s', 2)) == NULL && pacing_find(pc, cid('s', 3)) != NULL);
    pacing_free(pc);
}

static void test_future_not_early(void)
{
    pacing_t *pc = pacing_new();
    pacing_add(pc, P1, cid('s', 1), NULL, 5000);
    pacing_add(pc, P1, cid('s', 2), NULL, 1000);
    CHECK(pacing_next_wake(pc) == 1000);
    CHECK(pacing_next_ready(pc, 999) == NULL);
    pacing_proj_t *proj = pacing_next_ready(pc, 1000);
    CHECK(proj != NULL);
    pacing_call_t *out[4];
    size_t n = pacing_take(pc, proj, 1000, 4, out);
    CHECK(n == 1 && strcmp(out[0]->id, cid('s', 2)) == 0); /* s1 is not due yet */
    pacing_sending(pc, out[0]);
    pacing_release(pc, proj, 1200); /* pacing allows the next one at 1200; s1 is due at 5000 */
    CHECK(pacing_next_wake(pc) == 5000);
    CHECK(pacing_next_ready(pc, 4999) == NULL);
    CHECK(pacing_next_ready(pc, 5000) == proj);
    n = pacing_take(pc, proj, 5000, 4, out);
    CHECK(n == 1 && strcmp(out[0]->id, cid('s', 1)) == 0);
    pacing_put_back(pc, out[0]);
    pacing_release(pc, proj, 7000); /* pacing holds it: next wake is the pacing time */
    CHECK(pacing_next_wake(pc) == 7000);
    pacing_free(pc); /* frees the SENDING s2 and the queued s1 too */
}

/* three lanes with many due calls: dispatch order interleaves them, one call per lane per round */
static void test_fairness(void)
{
    pacing_t *pc = pacing_new();
    for (int i = 1; i <= 6; i++)
        pacing_add(pc, P1, cid('a', i), BA, 1000 + i);
    for (int i = 1; i <= 6; i++)
        pacing_add(pc, P1, cid('b', i), BB, 1000 + i);
    for (int i = 1; i <= 3; i++)
        pacing_add(pc, P1, cid('s', i), NULL, 1000 + i);

    od_gcra_t g = {0};
    int64_t now = 10000, last = 0;
    char order[32] = "";
    int sent = 0;
    while (pacing_count(pc) > 0 && sent < 20) {
        int64_t wake = pacing_next_wake(pc);
        if (wake > now)
            now = wake; /* the injected clock jumps to the next wake-up */
        pacing_proj_t *proj = pacing_next_ready(pc, now);
        CHECK(proj != NULL);
        if (proj == NULL)
            break;
        pacing_call_t *out[50];
        size_t n = pacing_take(pc, proj, now, 50, out);
        CHECK(n == pacing_count(pc)); /* every held call is offered, fair order */
        pacing_call_t *call = fake_dispatch(pc, proj, &g, now, 30, out, n);
        CHECK(call != NULL); /* the scheduler never asks before pacing allows */
        if (call == NULL)
            break;
        if (last != 0)
            CHECK(now - last == 2000); /* 30/min: exactly 2 s apart */
        last = now;
        order[sent++] = call->id[0];
        pacing_forget(pc, call);
    }
    CHECK_STR(order, "absabsabsababab");
    pacing_free(pc);
}

/* a lane that appears later joins the round; an emptied lane leaves it */
static void test_fairness_lanes_come_and_go(void)
{
    pacing_t *pc = pacing_new();
    for (int i = 1; i <= 4; i++)
        pacing_add(pc, P1, cid('a', i), BA, 100);
    od_gcra_t g = {0};
    int64_t now = 1000;
    char order[16] = "";
    int sent = 0;
    for (int step = 0; step < 7; step++) {
        if (step == 1) {
            pacing_add(pc, P1, cid('s', 1), NULL, 100);
            pacing_add(pc, P1, cid('b', 1), BB, 100);
            pacing_add(pc, P1, cid('b', 2), BB, 100);
        }
        int64_t wake = pacing_next_wake(pc);
        now = wake > now ? wake : now;
        pacing_proj_t *proj = pacing_next_ready(pc, now);
        pacing_call_t *out[50];
        size_t n = pacing_take(pc, proj, now, 50, out);
        pacing_call_t *call = fake_dispatch(pc, proj, &g, now, 60, out, n);
        order[sent++] = call->id[0];
        pacing_forget(pc, call);
    }
    CHECK_STR(order, "asbabaa");
    CHECK(pacing_count(pc) == 0);
    pacing_free(pc);
}

/* projects are independent: each has its own pacing, wake-ups in time order */
static void test_projects(void)
{
    pacing_t *pc = pacing_new();
    pacing_add(pc, P1, cid('a', 1), NULL, 100);
    pacing_add(pc, P1, cid('a', 2), NULL, 100);
    pacing_add(pc, P2, cid('b', 1), NULL, 150);
    pacing_add(pc, P2, cid('b', 2), NULL, 150);
    pacing_call_t *out[4];
    pacing_proj_t *p1 = pacing_next_ready(pc, 200);
    CHECK(p1 != NULL && strcmp(p1->id, P1) == 0);
    size_t n = pacing_take(pc, p1, 200, 1, out);
    CHECK(n == 1);
    pacing_proj_t *p2 = pacing_next_ready(pc, 200); /* p1 in flight does not block p2 */
    CHECK(p2 != NULL && strcmp(p2->id, P2) == 0);
    CHECK(pacing_next_ready(pc, 200) == NULL);
    pacing_call_t *o2[4];
    CHECK(pacing_take(pc, p2, 200, 4, o2) == 2);
    pacing_sending(pc, out[0]);
    pacing_release(pc, p1, 12200); /* 5/min */
    pacing_sending(pc, o2[0]);
    pacing_put_back(pc, o2[1]);
    pacing_release(pc, p2, 3200);
    CHECK(pacing_next_wake(pc) == 3200);
    CHECK(pacing_next_ready(pc, 3199) == NULL);
    CHECK(pacing_next_ready(pc, 5000) == p2);
    CHECK(pacing_take(pc, p2, 5000, 4, o2) == 1);
    pacing_put_back(pc, o2[0]);
    pacing_release(pc, p2, 20000);
    CHECK(pacing_next_wake(pc) == 12200); /* p1 first now */
    pacing_defer(pc, p1, 30000);          /* e.g. a wallet hold */
    CHECK(pacing_next_wake(pc) == 20000);
    pacing_forget(pc, out[0]);
    pacing_forget(pc, pacing_find(pc, cid('b', 1)));
    pacing_free(pc);
}

static int pred_is_p1(void *arg, const char *proj_id)
{
    (void)arg;
    return strcmp(proj_id, P1) == 0;
}

/* revoke: queued calls go at once; calls in flight stay valid until the caller is done with them */
static void test_drop(void)
{
    pacing_t *pc = pacing_new();
    for (int i = 1; i <= 3; i++) {
        pacing_add(pc, P1, cid('a', i), BA, 100);
        pacing_add(pc, P1, cid('s', i), NULL, 100);
        pacing_add(pc, P2, cid('b', i), NULL, 100);
    }
    pacing_proj_t *p1 = pacing_proj_find(pc, P1);
    pacing_call_t *out[4];
    CHECK(p1 != NULL && !p1->busy);
    size_t n = pacing_take(pc, p1, 1000, 3, out);
    CHECK(n == 3);
    pacing_sending(pc, out[0]); /* a1: being published */
    CHECK(pacing_drop_if(pc, pred_is_p1, NULL) == 1);
    CHECK(pacing_proj_find(pc, P1) == NULL);
    CHECK(pacing_count(pc) == 3 + 3); /* P2's three, P1's three in flight */
    CHECK(pacing_find(pc, cid('a', 2)) == NULL || pacing_find(pc, cid('a', 2))->state != PACING_QUEUED);
    /* a sweep may bring a P1 call back while the old entry is in flight: dedup holds */
    CHECK(pacing_add(pc, P1, out[1]->id, NULL, 100) == 0);
    pacing_put_back(pc, out[1]); /* "wait" after revoke: forgotten */
    pacing_forget(pc, out[2]);   /* gone */
    pacing_release(pc, p1, 5000);
    CHECK(pacing_count(pc) == 4);
    /* the partition comes back: a fresh entry for the project */
    CHECK(pacing_add(pc, P1, cid('s', 9), NULL, 100) == 1);
    CHECK(pacing_proj_find(pc, P1) != NULL);
    pacing_forget(pc, out[0]); /* delivery report of a1 after the revoke: frees the old project */
    CHECK(pacing_count(pc) == 4);
    pacing_free(pc);
}

/* many random operations: heap order and bookkeeping hold */
static void test_random(void)
{
    pacing_t *pc = pacing_new();
    srand(7);
    static const char *projs[] = {"10000000-0000-7000-8000-000000000000", "20000000-0000-7000-8000-000000000000",
                                  "30000000-0000-7000-8000-000000000000"};
    static const char *batches[] = {NULL, "b0000000-0000-7000-8000-000000000000",
                                    "c0000000-0000-7000-8000-000000000000"};
    int added = 0, done = 0;
    for (int i = 0; i < 3000; i++) {
        char id[37];
        snprintf(id, sizeof(id), "%08x-0000-7000-8000-000000000000", (unsigned)i);
        added += pacing_add(pc, projs[rand() % 3], id, batches[rand() % 3], rand() % 100000);
    }
    CHECK(added == 3000);
    int64_t now = 0;
    int ok = 1;
    while (pacing_count(pc) > 0) {
        int64_t wake = pacing_next_wake(pc);
        if (wake == INT64_MAX)
            break;
        now = wake > now ? wake : now;
        pacing_proj_t *proj;
        while ((proj = pacing_next_ready(pc, now)) != NULL) {
            pacing_call_t *out[8];
            size_t n = pacing_take(pc, proj, now, 8, out);
            if (n == 0)
                ok = 0;
            for (size_t k = 0; k < n; k++) {
                if (out[k]->due_ms > now)
                    ok = 0;
                if (k % 3 == 2)
                    pacing_put_back(pc, out[k]);
                else {
                    pacing_sending(pc, out[k]);
                    pacing_forget(pc, out[k]);
                    done++;
                }
            }
            pacing_release(pc, proj, now + 10);
        }
    }
    CHECK(ok);
    CHECK(done == 3000 && pacing_count(pc) == 0 && pacing_queued(pc) == 0);
    pacing_free(pc);
}

static void test_gcra(void)
{
    /* 30/min, burst 1: strictly 2 s apart */
    od_gcra_t g = {0};
    int64_t t0 = 1700000000000000LL;
    od_gcra_result_t r = od_gcra_take(&g, t0, 30, MIN_US, 1);
    CHECK(r.allowed && r.remaining == 0);
    CHECK(od_gcra_next_us(&g, t0, 30, MIN_US, 1) == t0 + 2000000);
    r = od_gcra_take(&g, t0 + 1000000, 30, MIN_US, 1);
    CHECK(!r.allowed && r.retry_after_us == 1000000);
    r = od_gcra_take(&g, t0 + 1999999, 30, MIN_US, 1);
    CHECK(!r.allowed && r.retry_after_us == 1);
    r = od_gcra_take(&g, t0 + 2000000, 30, MIN_US, 1);
    CHECK(r.allowed);
    CHECK(od_gcra_next_us(&g, t0 + 2000000, 30, MIN_US, 1) == t0 + 4000000);
    /* idle for long: allowed at once, no credit saved up beyond the burst */
    r = od_gcra_take(&g, t0 + 60000000, 30, MIN_US, 1);
    CHECK(r.allowed);
    r = od_gcra_take(&g, t0 + 60000001, 30, MIN_US, 1);
    CHECK(!r.allowed);
    CHECK(od_gcra_next_us(&g, t0 + 90000000, 30, MIN_US, 1) == t0 + 90000000); /* already allowed: now */

    /* 60/min, burst 60: 60 at once, remaining counts down, the 61st waits ~1 s */
    od_gcra_t h = {0};
    int all = 1;
    for (int i = 0; i < 60; i++) {
        r = od_gcra_take(&h, t0, 60, MIN_US, 60);
        if (!r.allowed || r.remaining != 59 - i)
            all = 0;
    }
    CHECK(all);
    CHECK(r.reset_us == 60000000);
    r = od_gcra_take(&h, t0, 60, MIN_US, 60);
    CHECK(!r.allowed && r.retry_after_us == 1000000 && r.remaining == 0);
    CHECK(od_gcra_next_us(&h, t0, 60, MIN_US, 60) == t0 + 1000000);
    r = od_gcra_take(&h, t0 + 1000000, 60, MIN_US, 60);
    CHECK(r.allowed && r.remaining == 0);
    r = od_gcra_take(&h, t0 + 3000000, 60, MIN_US, 60); /* 2 s later: 2 more tokens, this one takes one */
    CHECK(r.allowed && r.remaining == 1);
}

int main(void)
{
    test_lane_order();
    test_future_not_early();
    test_fairness();
    test_fairness_lanes_come_and_go();
    test_projects();
    test_drop();
    test_random();
    test_gcra();
    return od_test_result("test_pacing");
}
