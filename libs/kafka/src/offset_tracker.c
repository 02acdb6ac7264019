/*
 * Per-partition offset tracker (see kafka_int.h).
 *
 * Finding an offset is O(1) when the partition's offsets are contiguous (the
 * usual case: slot = offset - front offset); with gaps it falls back to a
 * binary search over the ring, which is sorted. Each offset is pushed and
 * popped once, so push/mark/pop are O(1) amortised.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "kafka_int.h"
#include "od/core.h"

#define SLOT(t, i) (((t)->head + (i)) & ((t)->cap - 1))

void od__ktrack_init(od__ktrack_t *t)
{
    memset(t, 0, sizeof(*t));
}

void od__ktrack_reset(od__ktrack_t *t)
{
    free(t->offsets);
    free(t->done);
    od__ktrack_init(t);
}

static void grow(od__ktrack_t *t)
{
    size_t ncap = t->cap == 0 ? 64 : t->cap * 2;
    int64_t *no = od_malloc(ncap * sizeof(*no));
    uint8_t *nd = od_malloc(ncap);
    for (size_t i = 0; i < t->len; i++) {
        no[i] = t->offsets[SLOT(t, i)];
        nd[i] = t->done[SLOT(t, i)];
    }
    free(t->offsets);
    free(t->done);
    t->offsets = no;
    t->done = nd;
    t->cap = ncap;
    t->head = 0;
}

void od__ktrack_push(od__ktrack_t *t, int64_t offset)
{
    if (t->len == t->cap)
        grow(t);
    size_t s = SLOT(t, t->len);
    t->offsets[s] = offset;
    t->done[s] = 0;
    t->len++;
}

/* index (0 = front) of `offset`, or -1 */
static ssize_t find(const od__ktrack_t *t, int64_t offset)
{
    if (t->len == 0)
        return -1;
    int64_t front = t->offsets[t->head];
    if (offset < front)
        return -1;
    if ((uint64_t)(offset - front) < t->len && t->offsets[SLOT(t, (size_t)(offset - front))] == offset)
        return (ssize_t)(offset - front);
    size_t lo = 0, hi = t->len; /* gaps in the offsets: binary search in [lo, hi) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t o = t->offsets[SLOT(t, mid)];
        if (o == offset)
            return (ssize_t)mid;
        if (o < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int od__ktrack_mark(od__ktrack_t *t, int64_t offset)
{
    ssize_t i = find(t, offset);
    if (i < 0)
        return -1;
    size_t s = SLOT(t, (size_t)i);
    if (t->done[s])
        return -1;
    t->done[s] = 1;
    t->ndone++;
    return 0;
}

int64_t od__ktrack_pop_done(od__ktrack_t *t)
{
    int64_t last = -1;
    while (t->len > 0 && t->done[t->head]) {
        last = t->offsets[t->head];
        t->head = (t->head + 1) & (t->cap - 1);
        t->len--;
        t->ndone--;
    }
    return last;
}
