#include "pacing.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "od/core.h"

/* ---- id map: open addressing keyed by the `char id[37]` every object starts with ---- */

static char map_tomb; /* marks a deleted slot */
#define TOMB ((void *)&map_tomb)

typedef struct idmap {
    void **slots; /* NULL = empty, TOMB = deleted, else an object whose first bytes are its id */
    size_t cap;   /* power of two (or 0) */
    size_t n;     /* live entries */
    size_t used;  /* live + tombstones */
} idmap_t;

static size_t id_hash(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *id != '\0'; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

static void **map_slot(const idmap_t *m, const char *id, int for_insert)
{
    if (m->cap == 0)
        return NULL;
    size_t mask = m->cap - 1, i = id_hash(id) & mask;
    void **tomb = NULL;
    for (;;) {
        void **s = &m->slots[i];
        if (*s == NULL)
            return for_insert ? (tomb != NULL ? tomb : s) : NULL;
        if (*s == TOMB) {
            if (tomb == NULL)
                tomb = s;
        } else if (strcmp((const char *)*s, id) == 0) {
            return s;
        }
        i = (i + 1) & mask;
    }
}

static void *map_get(const idmap_t *m, const char *id)
{
    void **s = map_slot(m, id, 0);
    return s != NULL ? *s : NULL;
}

static void map_put(idmap_t *m, void *obj);

static void map_grow(idmap_t *m)
{
    idmap_t old = *m;
    m->cap = old.cap == 0 ? 64 : (old.n * 4 > old.cap ? old.cap * 2 : old.cap); /* rehash alone clears tombstones */
    m->slots = od_calloc(m->cap, sizeof(void *));
    m->n = m->used = 0;
    for (size_t i = 0; i < old.cap; i++)
        if (old.slots[i] != NULL && old.slots[i] != TOMB)
            map_put(m, old.slots[i]);
    free(old.slots);
}

/* `obj` must not be in the map yet */
static void map_put(idmap_t *m, void *obj)
{
    if ((m->used + 1) * 10 > m->cap * 7)
        map_grow(m);
    void **s = map_slot(m, (const char *)obj, 1);
    assert(*s == NULL || *s == TOMB);
    if (*s == NULL)
        m->used++;
    *s = obj;
    m->n++;
}

static void map_del(idmap_t *m, const char *id)
{
    void **s = map_slot(m, id, 0);
    assert(s != NULL);
    *s = TOMB;
    m->n--;
}

/* ---- the set ---- */

struct pacing {
    idmap_t calls;        /* pacing_call_t by id: every call held */
    idmap_t projs;        /* pacing_proj_t by id: projects not dropped */
    pacing_proj_t **wake; /* min-heap by wake_at() of projects with work and not busy */
    size_t nwake, capwake;
    size_t nqueued;
    uint64_t seq;
};

static void lower_copy(char dst[37], const char *src)
{
    size_t i = 0;
    for (; src != NULL && src[i] != '\0' && i < 36; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] - 'A' + 'a') : src[i];
    dst[i] = '\0';
}

/* -- lane heap: by (due_ms, seq) -- */

static int call_before(const pacing_call_t *a, const pacing_call_t *b)
{
    return a->due_ms != b->due_ms ? a->due_ms < b->due_ms : a->seq < b->seq;
}

static void lane_push(pacing_lane_t *lane, pacing_call_t *call)
{
    if (lane->n == lane->cap) {
        lane->cap = lane->cap == 0 ? 8 : lane->cap * 2;
        lane->heap = od_realloc(lane->heap, lane->cap * sizeof(*lane->heap));
    }
    size_t i = lane->n++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!call_before(call, lane->heap[up]))
            break;
        lane->heap[i] = lane->heap[up];
        i = up;
    }
    lane->heap[i] = call;
}

static pacing_call_t *lane_pop(pacing_lane_t *lane)
{
    assert(lane->n > 0);
    pacing_call_t *top = lane->heap[0], *last = lane->heap[--lane->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= lane->n)
            break;
        if (c + 1 < lane->n && call_before(lane->heap[c + 1], lane->heap[c]))
            c++;
        if (!call_before(lane->heap[c], last))
            break;
        lane->heap[i] = lane->heap[c];
        i = c;
    }
    if (lane->n > 0)
        lane->heap[i] = last;
    return top;
}

/* -- wake heap: projects by the time they next have work -- */

/* INT64_MAX when the project has nothing to do (busy, dropped or no queued call) */
static int64_t wake_at(const pacing_proj_t *proj)
{
    if (proj->busy || proj->dropped || proj->nqueued == 0)
        return INT64_MAX;
    int64_t due = INT64_MAX;
    for (size_t i = 0; i < proj->nlanes; i++) /* a handful of lanes: a scan beats another heap */
        if (proj->lanes[i]->n > 0 && proj->lanes[i]->heap[0]->due_ms < due)
            due = proj->lanes[i]->heap[0]->due_ms;
    return OD_MAX(due, proj->not_before_ms);
}

static void wake_set(pacing_t *pc, size_t i, pacing_proj_t *proj)
{
    pc->wake[i] = proj;
    proj->wake_idx = i;
}

static void wake_sift_up(pacing_t *pc, size_t i, int64_t at)
{
    pacing_proj_t *proj = pc->wake[i];
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (wake_at(pc->wake[up]) <= at)
            break;
        wake_set(pc, i, pc->wake[up]);
        i = up;
    }
    wake_set(pc, i, proj);
}

static void wake_sift_down(pacing_t *pc, size_t i, int64_t at)
{
    pacing_proj_t *proj = pc->wake[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= pc->nwake)
            break;
        int64_t ca = wake_at(pc->wake[c]);
        if (c + 1 < pc->nwake) {
            int64_t cb = wake_at(pc->wake[c + 1]);
            if (cb < ca) {
                c++;
                ca = cb;
            }
        }
        if (ca >= at)
            break;
        wake_set(pc, i, pc->wake[c]);
        i = c;
    }
    wake_set(pc, i, proj);
}

static void wake_remove(pacing_t *pc, pacing_proj_t *proj)
{
    size_t i = proj->wake_idx;
    if (i == SIZE_MAX)
        return;
    proj->wake_idx = SIZE_MAX;
    pacing_proj_t *last = pc->wake[--pc->nwake];
    if (i == pc->nwake)
        return;
    wake_set(pc, i, last);
    int64_t at = wake_at(last);
    wake_sift_up(pc, i, at);
    wake_sift_down(pc, last->wake_idx, at);
}

/* Puts `proj` where its (possibly changed) wake time belongs: in the heap or out of it. */
static void wake_update(pacing_t *pc, pacing_proj_t *proj)
{
    int64_t at = wake_at(proj);
    if (at == INT64_MAX) {
        wake_remove(pc, proj);
        return;
    }
    if (proj->wake_idx == SIZE_MAX) {
        if (pc->nwake == pc->capwake) {
            pc->capwake = pc->capwake == 0 ? 16 : pc->capwake * 2;
            pc->wake = od_realloc(pc->wake, pc->capwake * sizeof(*pc->wake));
        }
        wake_set(pc, pc->nwake++, proj);
    }
    wake_sift_up(pc, proj->wake_idx, at);
    wake_sift_down(pc, proj->wake_idx, at);
}

/* -- projects and lanes -- */

static void proj_free(pacing_proj_t *proj)
{
    assert(proj->nlanes == 0 && proj->ncalls == 0);
    free(proj->lanes);
    free(proj);
}

/* frees a dropped project once nothing refers to it */
static void proj_maybe_free(pacing_proj_t *proj)
{
    if (proj->dropped && !proj->busy && proj->ncalls == 0)
        proj_free(proj);
}

static pacing_lane_t *lane_get(pacing_proj_t *proj, const char *batch_id)
{
    char key[37];
    lower_copy(key, batch_id);
    for (size_t i = 0; i < proj->nlanes; i++)
        if (strcmp(proj->lanes[i]->batch_id, key) == 0)
            return proj->lanes[i];
    if (proj->nlanes == proj->caplanes) {
        proj->caplanes = proj->caplanes == 0 ? 4 : proj->caplanes * 2;
        proj->lanes = od_realloc(proj->lanes, proj->caplanes * sizeof(*proj->lanes));
    }
    pacing_lane_t *lane = od_calloc(1, sizeof(*lane));
    memcpy(lane->batch_id, key, sizeof(key));
    proj->lanes[proj->nlanes++] = lane; /* a new lane joins at the end of the round */
    return lane;
}

static size_t lane_index(const pacing_proj_t *proj, const pacing_lane_t *lane)
{
    for (size_t i = 0; i < proj->nlanes; i++)
        if (proj->lanes[i] == lane)
            return i;
    assert(!"lane not in its project");
    return 0;
}

/* a lane goes when it holds no call in any state; the round-robin cursor keeps pointing at the same next lane */
static void lane_maybe_free(pacing_proj_t *proj, pacing_lane_t *lane)
{
    if (lane->ncalls > 0)
        return;
    size_t i = lane_index(proj, lane);
    memmove(&proj->lanes[i], &proj->lanes[i + 1], (proj->nlanes - i - 1) * sizeof(*proj->lanes));
    proj->nlanes--;
    if (proj->rr > i)
        proj->rr--; /* stays <= nlanes */
    if (proj->nlanes == 0)
        proj->rr = 0;
    free(lane->heap);
    free(lane);
}

/* unlinks a call that is no longer in a lane heap, frees it and whatever it kept alive */
static void call_free(pacing_t *pc, pacing_call_t *call)
{
    pacing_proj_t *proj = call->proj;
    pacing_lane_t *lane = call->lane;
    map_del(&pc->calls, call->id);
    free(call);
    lane->ncalls--;
    proj->ncalls--;
    lane_maybe_free(proj, lane);
}

/* ---- public ---- */

pacing_t *pacing_new(void)
{
    return od_calloc(1, sizeof(pacing_t));
}

static void proj_free_all(pacing_proj_t *proj)
{
    for (size_t l = 0; l < proj->nlanes; l++) {
        free(proj->lanes[l]->heap);
        free(proj->lanes[l]);
    }
    free(proj->lanes);
    free(proj);
}

void pacing_free(pacing_t *pc)
{
    /* projects live in the map, or (dropped) hang on from their remaining calls */
    size_t ndead = 0;
    pacing_proj_t **dead = od_malloc((pc->calls.n + 1) * sizeof(*dead));
    for (size_t i = 0; i < pc->calls.cap; i++) {
        pacing_call_t *call = pc->calls.slots[i];
        if (call == NULL || call == TOMB)
            continue;
        if (call->proj->dropped == 1) {
            call->proj->dropped = 2; /* collected */
            dead[ndead++] = call->proj;
        }
        free(call);
    }
    for (size_t i = 0; i < pc->projs.cap; i++) {
        pacing_proj_t *proj = pc->projs.slots[i];
        if (proj != NULL && proj != TOMB)
            proj_free_all(proj);
    }
    for (size_t i = 0; i < ndead; i++)
        proj_free_all(dead[i]);
    free(dead);
    free(pc->calls.slots);
    free(pc->projs.slots);
    free(pc->wake);
    free(pc);
}

int pacing_add(pacing_t *pc, const char *proj_id, const char *call_id, const char *batch_id, int64_t due_ms)
{
    char id[37];
    lower_copy(id, call_id);
    if (map_get(&pc->calls, id) != NULL)
        return 0;
    char pid[37];
    lower_copy(pid, proj_id);
    pacing_proj_t *proj = map_get(&pc->projs, pid);
    if (proj == NULL) {
        proj = od_calloc(1, sizeof(*proj));
        memcpy(proj->id, pid, sizeof(pid));
        proj->wake_idx = SIZE_MAX;
        map_put(&pc->projs, proj);
    }
    pacing_call_t *call = od_calloc(1, sizeof(*call));
    memcpy(call->id, id, sizeof(id));
    call->due_ms = due_ms;
    call->seq = pc->seq++;
    call->state = PACING_QUEUED;
    call->proj = proj;
    call->lane = lane_get(proj, batch_id);
    map_put(&pc->calls, call);
    call->lane->ncalls++;
    proj->ncalls++;
    lane_push(call->lane, call);
    proj->nqueued++;
    pc->nqueued++;
    wake_update(pc, proj);
    return 1;
}

pacing_call_t *pacing_find(pacing_t *pc, const char *call_id)
{
    char id[37];
    lower_copy(id, call_id);
    return map_get(&pc->calls, id);
}

pacing_proj_t *pacing_proj_find(pacing_t *pc, const char *proj_id)
{
    char id[37];
    lower_copy(id, proj_id);
    return map_get(&pc->projs, id);
}

size_t pacing_count(const pacing_t *pc)
{
    return pc->calls.n;
}

size_t pacing_queued(const pacing_t *pc)
{
    return pc->nqueued;
}

int64_t pacing_next_wake(const pacing_t *pc)
{
    return pc->nwake == 0 ? INT64_MAX : wake_at(pc->wake[0]);
}

pacing_proj_t *pacing_next_ready(pacing_t *pc, int64_t now_ms)
{
    if (pc->nwake == 0 || wake_at(pc->wake[0]) > now_ms)
        return NULL;
    pacing_proj_t *proj = pc->wake[0];
    wake_remove(pc, proj);
    return proj;
}

size_t pacing_take(pacing_t *pc, pacing_proj_t *proj, int64_t now_ms, size_t max, pacing_call_t **out)
{
    assert(!proj->busy && !proj->dropped);
    wake_remove(pc, proj);
    proj->busy = 1;
    size_t n = 0;
    while (n < max) {
        int progressed = 0;
        /* one round: the head of each lane that has a due call, starting at the cursor */
        for (size_t k = 0; k < proj->nlanes && n < max; k++) {
            pacing_lane_t *lane = proj->lanes[(proj->rr + k) % proj->nlanes];
            if (lane->n == 0 || lane->heap[0]->due_ms > now_ms)
                continue;
            pacing_call_t *call = lane_pop(lane);
            call->state = PACING_TAKEN;
            out[n++] = call;
            progressed = 1;
        }
        if (!progressed)
            break;
    }
    proj->nqueued -= n;
    pc->nqueued -= n;
    return n;
}

void pacing_put_back(pacing_t *pc, pacing_call_t *call)
{
    assert(call->state == PACING_TAKEN);
    pacing_proj_t *proj = call->proj;
    if (proj->dropped) {
        call_free(pc, call);
        proj_maybe_free(proj);
        return;
    }
    call->state = PACING_QUEUED;
    lane_push(call->lane, call); /* same (due_ms, seq): same place as before */
    proj->nqueued++;
    pc->nqueued++;
    wake_update(pc, proj);
}

void pacing_sending(pacing_t *pc, pacing_call_t *call)
{
    (void)pc;
    assert(call->state == PACING_TAKEN);
    pacing_proj_t *proj = call->proj;
    call->state = PACING_SENDING;
    if (!proj->dropped)
        proj->rr = lane_index(proj, call->lane) + 1; /* may equal nlanes: a lane added later goes next */
}

void pacing_forget(pacing_t *pc, pacing_call_t *call)
{
    assert(call->state != PACING_QUEUED);
    pacing_proj_t *proj = call->proj;
    call_free(pc, call);
    if (proj->dropped)
        proj_maybe_free(proj);
    else
        wake_update(pc, proj);
}

void pacing_release(pacing_t *pc, pacing_proj_t *proj, int64_t not_before_ms)
{
    assert(proj->busy);
    proj->busy = 0;
    if (proj->dropped) {
        proj_maybe_free(proj);
        return;
    }
    proj->not_before_ms = not_before_ms;
    wake_update(pc, proj);
}

void pacing_defer(pacing_t *pc, pacing_proj_t *proj, int64_t not_before_ms)
{
    assert(!proj->busy);
    proj->not_before_ms = not_before_ms;
    wake_update(pc, proj);
}

void pacing_drop(pacing_t *pc, pacing_proj_t *proj)
{
    assert(!proj->dropped);
    wake_remove(pc, proj);
    map_del(&pc->projs, proj->id);
    proj->dropped = 1;
    /* free the queued calls; lanes with TAKEN/SENDING calls stay until those go */
    for (size_t i = proj->nlanes; i-- > 0;) {
        pacing_lane_t *lane = proj->lanes[i];
        while (lane->n > 0) {
            pacing_call_t *call = lane_pop(lane);
            int last = lane->ncalls == 1;
            proj->nqueued--;
            pc->nqueued--;
            call_free(pc, call); /* frees the lane with its last call */
            if (last)
                break;
        }
    }
    proj_maybe_free(proj);
}

size_t pacing_drop_if(pacing_t *pc, int (*pred)(void *arg, const char *proj_id), void *arg)
{
    /* collect first: dropping edits the map being walked */
    size_t n = 0, cap = pc->projs.n;
    pacing_proj_t **victims = od_malloc((cap + 1) * sizeof(*victims));
    for (size_t i = 0; i < pc->projs.cap; i++) {
        pacing_proj_t *proj = pc->projs.slots[i];
        if (proj != NULL && proj != TOMB && pred(arg, proj->id))
            victims[n++] = proj;
    }
    for (size_t i = 0; i < n; i++)
        pacing_drop(pc, victims[i]);
    free(victims);
    return n;
}
