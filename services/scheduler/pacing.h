/*
 * The scheduler's in-memory queues: which calls of which project are due,
 * in which order they go, and when each project may be looked at again.
 * Pure data structures, no I/O: time is always passed in (`now_ms`,
 * milliseconds since the Unix epoch, the clock of due_ms and od_dispatch's
 * next_ms), so the unit tests drive it with an injected clock.
 *
 *   pacing_t ── projects (map by id) ── lanes (one per batch_id, one for
 *                                       single calls), each a min-heap of
 *                                       calls by (due_ms, arrival)
 *            ── known calls (map by id: every call held, whatever its state)
 *            ── wake heap: projects by the time they next have work
 *
 * Fairness: pacing_take() walks the lanes of a project round-robin, one due
 * call per lane per round, starting at the lane after the one whose call was
 * last dispatched (pacing_sending()). PostgreSQL's od_dispatch decides how
 * many of the offered calls actually go (its GCRA has no burst: usually the
 * first); the others come back with pacing_put_back() and keep their place.
 *
 * A project is "busy" between pacing_take() and pacing_release() (one
 * od_dispatch in flight per project); a busy project is not in the wake heap.
 */
#ifndef OD_SCHED_PACING_H
#define OD_SCHED_PACING_H

#include <stddef.h>
#include <stdint.h>

typedef struct pacing pacing_t;
typedef struct pacing_proj pacing_proj_t;
typedef struct pacing_lane pacing_lane_t;

typedef enum pacing_call_state {
    PACING_QUEUED,  /**< waits for its due time and its project's pacing (lane->heap) */
    PACING_TAKEN,   /**< handed out by pacing_take: its od_dispatch is in flight (the caller's dispatch job) */
    PACING_SENDING, /**< dispatched in PostgreSQL, being published to Kafka (the caller's send job) */
} pacing_call_state_t;

/** One call held in memory. Lives in pacing's known-call map until pacing_forget(). */
typedef struct pacing_call {
    char id[37];               /**< call id (lower-case uuid); first member: the maps key on it */
    int64_t due_ms;            /**< due time, ms since the epoch */
    uint64_t seq;              /**< arrival order: breaks ties of due_ms (FIFO) */
    pacing_call_state_t state; /**< where the call is (see the enum) */
    pacing_lane_t *lane;       /**< its lane (never NULL) */
    pacing_proj_t *proj;       /**< its project (never NULL) */
    const char *zones;         /**< the number's time zones for od_dispatch's calling windows: a static
                                    string of od_phone_time_zones ("" unknown), set by the caller after
                                    pacing_add (NULL until then) */
} pacing_call_t;

/** One lane: the queued calls of one batch (or the single calls) of a project. */
struct pacing_lane {
    char batch_id[37];     /**< "" for single calls */
    pacing_call_t **heap;  /**< min-heap by (due_ms, seq) of the QUEUED calls */
    size_t n, cap;         /**< heap size and capacity */
    size_t ncalls;         /**< calls of this lane in any state; the lane is freed at 0 */
};

/** One project: its lanes, its pacing and its place in the wake heap. */
struct pacing_proj {
    char id[37];            /**< project id; first member: the maps key on it */
    pacing_lane_t **lanes;  /**< its lanes, in creation order (round-robin order) */
    size_t nlanes, caplanes;
    size_t rr;              /**< the next pacing_take starts at lane rr % nlanes (rr ≤ nlanes) */
    size_t nqueued;         /**< QUEUED calls over all lanes */
    size_t ncalls;          /**< calls in any state */
    int64_t not_before_ms;  /**< no dispatch before this (pacing next_ms, hold, backoff) */
    int errors;             /**< consecutive failed dispatch attempts (the caller's backoff) */
    int busy;               /**< 1 between pacing_take and pacing_release */
    int dropped;            /**< 1 after pacing_drop: freed once not busy and without calls */
    size_t wake_idx;        /**< index in the wake heap, or SIZE_MAX when not in it */
};

/** Creates an empty set. */
pacing_t *pacing_new(void);
/** Frees everything, calls in every state included (their pointers die with it). No project may be busy. */
void pacing_free(pacing_t *pc);

/**
 * Adds a call (QUEUED) to its project's lane for `batch_id` (NULL or "" for a
 * single call). Returns 1 if added, 0 if the call is already held (any state).
 */
int pacing_add(pacing_t *pc, const char *proj_id, const char *call_id, const char *batch_id, int64_t due_ms);
/** The call held under `call_id`, or NULL. */
pacing_call_t *pacing_find(pacing_t *pc, const char *call_id);
/** The project `proj_id` if it has a (not dropped) entry, or NULL. */
pacing_proj_t *pacing_proj_find(pacing_t *pc, const char *proj_id);
/** Calls held in any state. */
size_t pacing_count(const pacing_t *pc);
/** Calls QUEUED (not yet offered to od_dispatch). */
size_t pacing_queued(const pacing_t *pc);

/** Earliest time a project has work (a due call and pacing allows), or INT64_MAX. */
int64_t pacing_next_wake(const pacing_t *pc);
/**
 * A project whose wake time is ≤ now_ms, taken out of the wake heap (the
 * caller then calls pacing_take and, later, pacing_release), or NULL.
 */
pacing_proj_t *pacing_next_ready(pacing_t *pc, int64_t now_ms);

/**
 * Takes up to `max` calls of `proj` due at `now_ms`, in fair order (lanes
 * round-robin, each lane by due time), into `out`; they become TAKEN and the
 * project busy. Returns how many.
 */
size_t pacing_take(pacing_t *pc, pacing_proj_t *proj, int64_t now_ms, size_t max, pacing_call_t **out);
/** A TAKEN call goes back to its lane in its old place (od_dispatch said "wait", or failed). Forgets it if its project was dropped. */
void pacing_put_back(pacing_t *pc, pacing_call_t *call);
/** A TAKEN call was dispatched: it becomes SENDING and the round-robin moves past its lane. */
void pacing_sending(pacing_t *pc, pacing_call_t *call);
/** Forgets a TAKEN or SENDING call (done, gone, blocked); frees it. */
void pacing_forget(pacing_t *pc, pacing_call_t *call);
/**
 * Ends the busy period of `proj`: it may be dispatched again from
 * `not_before_ms` on. Frees the project if it was dropped and holds no call.
 */
void pacing_release(pacing_t *pc, pacing_proj_t *proj, int64_t not_before_ms);
/** Sets when `proj` (not busy) may be dispatched next. */
void pacing_defer(pacing_t *pc, pacing_proj_t *proj, int64_t not_before_ms);

/**
 * Forgets `proj` and its QUEUED calls. Its TAKEN and SENDING calls stay held
 * until the caller puts them back (then they are forgotten) or forgets them;
 * the project's memory goes with the last of them.
 */
void pacing_drop(pacing_t *pc, pacing_proj_t *proj);
/** Drops every project for which `pred` returns 1. Returns how many. */
size_t pacing_drop_if(pacing_t *pc, int (*pred)(void *arg, const char *proj_id), void *arg);

#endif
