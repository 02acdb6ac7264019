/*
 * The sweep: PostgreSQL, not Kafka offsets, is what the scheduler recovers
 * from. Every OUTDIAL_SCHED_SWEEP_MS (and at once after an assignment) it
 * loads the queued calls of the projects it owns that are due within the
 * horizon and not dispatched recently. That one query finds
 *   - the calls of partitions just taken over (their old owner's memory is gone),
 *   - calls stored by ingress whose Kafka publish never happened (unpublished),
 *   - far-future calls as their due time comes within the horizon,
 *   - calls dispatched but never claimed (after OUTDIAL_SCHED_REDISPATCH_S).
 *
 * Ownership: a project belongs to the member assigned the partition its id
 * hashes to (calls.requested is keyed by project id), computed with the
 * producer's partitioner over the cached project list.
 *
 * Fair share of the limit: od_sched_sweep orders by due time over all the
 * projects given, so one project with a huge backlog could fill every sweep.
 * Two rules keep the others visible: a project already holding
 * SWEEP_PROJECT_CAP queued calls in memory is left out (it has work for a
 * while; this also bounds memory), and when a sweep comes back full, the
 * projects it returned are left out of the next one.
 */
#include <stdlib.h>
#include <string.h>

#include "od/core.h"
#include "od/log.h"
#include "scheduler.h"

#define SWEEP_PROJECT_CAP 1000    /* queued calls in memory above which a project is not swept */
#define PROJECTS_REFRESH_MS 10000 /* the project list is reloaded at least this often */

const od_pg_stmt_t sched__stmts[] = {
    {"sched_projects", "SELECT id::text FROM projects"},
    {"sched_sweep", "SELECT id::text, project_id::text, batch_id::text, due_ms, unpublished, phone "
                    "FROM od_sched_sweep($1::uuid[], $2::integer, $3::integer, $4::integer)"},
    {"sched_dispatch", "SELECT od_dispatch($1::uuid, $2::uuid[], $3::integer, $4::text[], $5::bigint)::text"},
};
const size_t sched__nstmts = OD_ARRAY_SIZE(sched__stmts);

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

static int cmp_idp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void sched__part_cnt_refresh(sched_t *s)
{
    int n = s->cons != NULL ? od_kcons_partition_count(s->cons) : -1;
    if (n > 0 && n != s->part_cnt) {
        if (s->part_cnt > 0)
            od_warn("calls.requested now has %d partitions (was %d)", n, (int)s->part_cnt);
        s->part_cnt = n;
    }
}

int sched__owns(sched_t *s, const char *proj_id)
{
    if (s->part_cnt <= 0)
        return 0;
    int32_t p = od_kafka_partition_for(proj_id, strlen(proj_id), s->part_cnt);
    return p >= 0 && p < s->nowned && s->owned[p];
}

static void crowded_clear(sched_t *s)
{
    for (size_t i = 0; i < s->ncrowded; i++)
        free(s->crowded[i]);
    free(s->crowded);
    s->crowded = NULL;
    s->ncrowded = 0;
}

static int is_crowded(sched_t *s, const char *id)
{
    char *key = (char *)id;
    return s->ncrowded > 0 && bsearch(&key, s->crowded, s->ncrowded, sizeof(char *), cmp_idp) != NULL;
}

static void sweep_done(sched_t *s)
{
    s->sweep_inflight = 0;
    if (s->draining) {
        sched__drain_check(s);
        return;
    }
    if (s->sweep_again) {
        s->sweep_again = 0;
        sched__sweep_now(s);
    }
}

static void on_sweep(void *arg, int status, PGresult *res)
{
    sched_t *s = arg;
    if (status != OD_PG_OK) {
        od_warn("sweep failed: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "connection lost");
        sweep_done(s);
        return;
    }
    int rows = PQntuples(res), added = 0, recovered = 0;
    crowded_clear(s);
    int full = rows >= s->conf->sweep_limit;
    if (full)
        s->crowded = od_malloc((size_t)rows * sizeof(char *));
    for (int i = 0; i < rows; i++) {
        const char *id = PQgetvalue(res, i, 0), *proj_id = PQgetvalue(res, i, 1);
        const char *batch_id = PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2);
        int64_t due_ms = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        int unpublished = PQgetvalue(res, i, 4)[0] == 't';
        if (full && (s->ncrowded == 0 || strcmp(s->crowded[s->ncrowded - 1], proj_id) != 0))
            s->crowded[s->ncrowded++] = od_strdup(proj_id); /* duplicates are harmless for bsearch */
        if (s->draining || !sched__owns(s, proj_id))
            continue; /* revoked while the query ran: the new owner sweeps it */
        if (sched__add(s, proj_id, id, batch_id, due_ms, PQgetvalue(res, i, 5))) {
            added++;
            if (unpublished) {
                recovered++;
                od_log(OD_LOG_INFO, id, "recovered a call that was stored but never published");
            }
        }
    }
    if (full) {
        qsort(s->crowded, s->ncrowded, sizeof(char *), cmp_idp);
        od_info("sweep hit its limit (%d calls); the next sweep skips the %zu projects it returned", rows, s->ncrowded);
    }
    if (recovered > 0)
        od_metric_add(s->m_recovered, recovered);
    if (added > 0) {
        od_debug("sweep: %d rows, %d new calls in memory", rows, added);
        sched__changed(s);
    }
    sweep_done(s);
}

/* the array literal of the projects to sweep: owned, not crowded, not saturated */
static int sweep_projects(sched_t *s, od_buf_t *arr)
{
    int n = 0;
    od_buf_puts(arr, "{");
    for (size_t i = 0; i < s->nprojects; i++) {
        const char *id = s->projects[i];
        if (!sched__owns(s, id) || is_crowded(s, id))
            continue;
        pacing_proj_t *proj = pacing_proj_find(s->pc, id);
        if (proj != NULL && proj->nqueued >= SWEEP_PROJECT_CAP)
            continue;
        od_buf_printf(arr, "%s%s", n > 0 ? "," : "", id);
        n++;
    }
    od_buf_puts(arr, "}");
    return n;
}

static void run_sweep(sched_t *s)
{
    od_buf_t arr = OD_BUF_INIT;
    if (sweep_projects(s, &arr) == 0) {
        crowded_clear(s); /* nothing left out twice in a row */
        od_buf_free(&arr);
        sweep_done(s);
        return;
    }
    const char *vals[4] = {arr.base, s->horizon_txt, s->redispatch_txt, s->limit_txt};
    if (od_pg_query(s->pg, "sched_sweep", 4, vals, on_sweep, s) != 0) {
        od_debug("sweep skipped: PostgreSQL not connected");
        sweep_done(s);
    }
    od_buf_free(&arr);
}

static void on_projects(void *arg, int status, PGresult *res)
{
    sched_t *s = arg;
    if (status != OD_PG_OK) {
        od_warn("loading projects failed: %s", status == OD_PG_EQUERY ? od_pg_errmsg(res) : "connection lost");
        sweep_done(s);
        return;
    }
    int rows = PQntuples(res);
    free(s->projects);
    s->projects = od_malloc((size_t)(rows + 1) * sizeof(*s->projects));
    s->nprojects = 0;
    for (int i = 0; i < rows; i++) {
        const char *id = PQgetvalue(res, i, 0);
        if (strlen(id) != 36)
            continue;
        memcpy(s->projects[s->nprojects++], id, 37);
    }
    qsort(s->projects, s->nprojects, sizeof(*s->projects), cmp_id);
    s->projects_at_ms = od_mono_ms();
    s->projects_stale = 0;
    if (s->draining) {
        sweep_done(s);
        return;
    }
    run_sweep(s);
}

void sched__sweep_now(sched_t *s)
{
    if (s->draining || s->pg == NULL)
        return;
    if (s->sweep_inflight) {
        s->sweep_again = 1;
        return;
    }
    sched__part_cnt_refresh(s);
    if (s->part_cnt <= 0) {
        od_debug("sweep skipped: partition count of %s not known yet", s->topic_req);
        return;
    }
    int any = 0;
    for (int32_t p = 0; p < s->nowned && !any; p++)
        any = s->owned[p];
    if (!any)
        return;
    s->sweep_inflight = 1;
    if (s->projects_stale || s->projects_at_ms == 0 || od_mono_ms() - s->projects_at_ms >= PROJECTS_REFRESH_MS) {
        if (od_pg_query(s->pg, "sched_projects", 0, NULL, on_projects, s) != 0) {
            od_debug("sweep skipped: PostgreSQL not connected");
            sweep_done(s);
        }
        return;
    }
    run_sweep(s);
}

void sched__project_seen(sched_t *s, const char *proj_id)
{
    /* before the first project list arrives there is nothing to search (bsearch wants an array) */
    if (s->nprojects == 0 || bsearch(proj_id, s->projects, s->nprojects, sizeof(*s->projects), cmp_id) == NULL)
        s->projects_stale = 1;
}

static void on_sweep_timer(uv_timer_t *t)
{
    sched__sweep_now(t->data);
}

void sched__sweep_start(sched_t *s)
{
    uv_timer_init(s->svc->loop, &s->sweep_timer);
    s->sweep_timer.data = s;
    uv_timer_start(&s->sweep_timer, on_sweep_timer, (uint64_t)s->conf->sweep_ms, (uint64_t)s->conf->sweep_ms);
}

void sched__sweep_free(sched_t *s)
{
    crowded_clear(s);
    free(s->projects);
    s->projects = NULL;
    s->nprojects = 0;
}
