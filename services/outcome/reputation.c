/*
 * Caller reputation (docs/reputation.md): every OUTDIAL_REPUTATION_INTERVAL_MS
 * each copy runs od_reputation_check (proto/sql/018_reputation.sql). The copy
 * that gets the advisory lock decides the slow-downs and recoveries of the
 * caller IDs (pace_factor, audit log, webhook event) and logs each change;
 * every copy refreshes its /metrics gauges from the same answer:
 *
 *   outdial_reputation_short_hangup_rate{project,caller_id,window}
 *   outdial_reputation_spam_rate{project,caller_id,window}
 *   outdial_reputation_pace_factor{project,caller_id}
 *   outdial_reputation_project_short_hangup_rate{project,window}
 *   outdial_reputation_project_spam_rate{project,window}
 *
 * A series exists while its window has answered calls (a rate of nothing is
 * left out, not 0); the caller IDs and projects are those with answered
 * calls in the last 7 days (and slowed-down caller IDs for the pace factor):
 * a series that leaves the answer is removed, so the count follows the
 * active caller IDs instead of growing with every caller ID ever seen.
 *
 * The answer's series come sorted by (project, caller ID), bytewise, as the
 * groups here are kept: one merge walk per refresh.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/log.h"
#include "outcome.h"

#define NWIN 3
static const char *const windows[NWIN] = {"1h", "24h", "7d"};

/* the gauges of one caller ID, or of a project (caller[0] == '\0') */
typedef struct rep_group {
    char project[37];
    char caller[17];
    od_metric_t *rate[2][NWIN]; /* [0] short hang-ups, [1] spam; NULL: no answered calls in the window */
    od_metric_t *pace;          /* caller IDs only */
} rep_group_t;

struct outcome_rep {
    outcome_t *o;
    uv_timer_t timer;
    int inflight;
    char params[3][32];
    rep_group_t *groups; /* sorted by (project, caller) */
    size_t n;
    od_metric_t *warnings, *recoveries;
};

static int group_cmp(const char *p1, const char *c1, const char *p2, const char *c2)
{
    int d = strcmp(p1, p2);
    return d != 0 ? d : strcmp(c1, c2);
}

static void gauge_drop(od_metric_t **m)
{
    if (*m != NULL)
        od_metric_remove(*m);
    *m = NULL;
}

static void group_clear(rep_group_t *g)
{
    for (int k = 0; k < 2; k++)
        for (int w = 0; w < NWIN; w++)
            gauge_drop(&g->rate[k][w]);
    gauge_drop(&g->pace);
}

/* Sets (creating) or drops the gauges of a group from one series of the answer. */
static void group_set(rep_group_t *g, json_t *s)
{
    static const char *const rate_names[2][2] = {
        {"outdial_reputation_short_hangup_rate", "outdial_reputation_spam_rate"},
        {"outdial_reputation_project_short_hangup_rate", "outdial_reputation_project_spam_rate"}};
    static const char *const rate_help[2] = {
        "caller reputation: answered calls the callee hung up within OUTDIAL_REPUTATION_SHORT_CALL_S, per answered call",
        "caller reputation: answered calls classified spam, per answered call"};
    int proj = g->caller[0] == '\0';
    char labels[160];
    json_t *r = json_object_get(s, "r");
    for (int w = 0; w < NWIN; w++) {
        json_t *pair = json_object_get(r, windows[w]);
        for (int k = 0; k < 2; k++) {
            json_t *v = json_array_get(pair, (size_t)k);
            if (!json_is_number(v)) {
                gauge_drop(&g->rate[k][w]);
                continue;
            }
            if (g->rate[k][w] == NULL) {
                if (proj)
                    snprintf(labels, sizeof(labels), "project=\"%s\",window=\"%s\"", g->project, windows[w]);
                else
                    snprintf(labels, sizeof(labels), "project=\"%s\",caller_id=\"%s\",window=\"%s\"", g->project,
                             g->caller, windows[w]);
                g->rate[k][w] = od_gauge(rate_names[proj][k], labels, rate_help[k]);
            }
            od_metric_set(g->rate[k][w], json_number_value(v));
        }
    }
    json_t *pf = json_object_get(s, "pf");
    if (proj || !json_is_number(pf)) {
        gauge_drop(&g->pace);
        return;
    }
    if (g->pace == NULL) {
        snprintf(labels, sizeof(labels), "project=\"%s\",caller_id=\"%s\"", g->project, g->caller);
        g->pace = od_gauge("outdial_reputation_pace_factor", labels,
                           "caller reputation: the share of the project's pacing a caller ID may use (1: normal; "
                           "halved on each warning down to 1/16)");
    }
    od_metric_set(g->pace, json_number_value(pf));
}

/* 1 if a series names its project and caller ID in a form fit for a label */
static int series_key(json_t *s, const char **project, const char **caller)
{
    *project = json_string_value(json_object_get(s, "p"));
    json_t *c = json_object_get(s, "c");
    *caller = json_is_string(c) ? json_string_value(c) : "";
    if (*project == NULL || od_uuid_check(*project, strlen(*project)) != 0 || strlen(*caller) >= sizeof(((rep_group_t *)0)->caller))
        return 0;
    for (const char *p = *caller; *p != '\0'; p++)
        if (!(*p == '+' || (*p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

/* The gauges from the answer's series: a merge walk of the old groups and the new series. */
static void refresh(outcome_rep_t *r, json_t *series)
{
    size_t ns = json_array_size(series), i = 0, n = 0;
    rep_group_t *next = od_calloc(ns + 1, sizeof(*next));
    for (size_t k = 0; k < ns; k++) {
        json_t *s = json_array_get(series, k);
        const char *project, *caller;
        if (!series_key(s, &project, &caller))
            continue;
        if (n > 0 && group_cmp(next[n - 1].project, next[n - 1].caller, project, caller) >= 0)
            continue; /* out of order or twice: the walk needs the answer sorted */
        while (i < r->n && group_cmp(r->groups[i].project, r->groups[i].caller, project, caller) < 0)
            group_clear(&r->groups[i++]); /* gone from the answer */
        rep_group_t *g = &next[n];
        if (i < r->n && group_cmp(r->groups[i].project, r->groups[i].caller, project, caller) == 0) {
            *g = r->groups[i++];
        } else {
            snprintf(g->project, sizeof(g->project), "%s", project);
            snprintf(g->caller, sizeof(g->caller), "%s", caller);
        }
        group_set(g, s);
        n++;
    }
    while (i < r->n)
        group_clear(&r->groups[i++]);
    free(r->groups);
    r->groups = next;
    r->n = n;
}

static void log_changes(outcome_rep_t *r, json_t *changes)
{
    size_t i;
    json_t *c;
    json_array_foreach(changes, i, c) {
        const char *action = json_string_value(json_object_get(c, "action"));
        json_t *pf = json_object_get(c, "pace_factor");
        int warning = action != NULL && strcmp(action, "caller_id.reputation_warning") == 0;
        json_t *rate = json_object_get(c, "rate");
        od_log(warning ? OD_LOG_WARN : OD_LOG_INFO, NULL,
               "%s: caller ID %s of project %s: pace factor %g -> %g (last hour: %lld answered, %lld short "
               "hang-ups, %lld spam, rate %s%g)",
               action != NULL ? action : "?", json_string_value(json_object_get(c, "caller_id")),
               json_string_value(json_object_get(c, "project_id")),
               json_number_value(json_object_get(pf, "from")), json_number_value(json_object_get(pf, "to")),
               (long long)json_integer_value(json_object_get(c, "answered")),
               (long long)json_integer_value(json_object_get(c, "short_hangups")),
               (long long)json_integer_value(json_object_get(c, "spam")), json_is_number(rate) ? "" : "none ",
               json_is_number(rate) ? json_number_value(rate) : 0.0);
        od_metric_add(warning ? r->warnings : r->recoveries, 1);
    }
}

static void on_check(void *arg, int status, PGresult *res)
{
    outcome_rep_t *r = arg;
    r->inflight = 0;
    if (status != OD_PG_OK) {
        od_warn("reputation check: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "postgresql unavailable");
        goto out;
    }
    json_t *ans = PQntuples(res) == 1 ? json_loads(PQgetvalue(res, 0, 0), 0, NULL) : NULL;
    if (ans == NULL) {
        od_warn("reputation check: unreadable answer");
        goto out;
    }
    log_changes(r, json_object_get(ans, "changes"));
    refresh(r, json_object_get(ans, "series"));
    json_decref(ans);
out:
    if (r->o->draining)
        outcome__drain_check(r->o);
}

static void on_timer(uv_timer_t *t)
{
    outcome_rep_t *r = t->data;
    if (r->inflight)
        return;
    const char *params[3] = {r->params[0], r->params[1], r->params[2]};
    if (od_pg_query(r->o->pg, "reputation_check", 3, params, on_check, r) == 0)
        r->inflight = 1;
}

outcome_rep_t *outcome__rep_start(outcome_t *o)
{
    const outcome_conf_t *conf = o->conf;
    outcome_rep_t *r = od_calloc(1, sizeof(*r));
    r->o = o;
    snprintf(r->params[0], sizeof(r->params[0]), "%.17g", conf->rep_threshold);
    snprintf(r->params[1], sizeof(r->params[1]), "%lld", (long long)conf->rep_min_answered);
    snprintf(r->params[2], sizeof(r->params[2]), "%lld", (long long)conf->rep_cooldown_s);
    r->warnings = od_counter("outdial_reputation_warnings_total", NULL,
                             "caller IDs slowed down by this copy (caller_id.reputation_warning)");
    r->recoveries = od_counter("outdial_reputation_recoveries_total", NULL,
                               "steps of a slowed-down caller ID back toward its normal pacing, by this copy");
    uv_timer_init(o->loop, &r->timer);
    r->timer.data = r;
    uint64_t every = (uint64_t)conf->rep_interval_ms;
    uv_timer_start(&r->timer, on_timer, OD_MIN(every, 1000u), every); /* the gauges soon after a start */
    return r;
}

void outcome__rep_pause(outcome_rep_t *r)
{
    uv_timer_stop(&r->timer);
}

int outcome__rep_busy(const outcome_rep_t *r)
{
    return r->inflight;
}

static void on_closed(uv_handle_t *h)
{
    outcome_rep_t *r = h->data;
    for (size_t i = 0; i < r->n; i++)
        group_clear(&r->groups[i]);
    free(r->groups);
    free(r);
}

void outcome__rep_close(outcome_rep_t *r)
{
    uv_close((uv_handle_t *)&r->timer, on_closed);
}
