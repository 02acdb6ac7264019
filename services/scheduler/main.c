/* outdial-scheduler: due times and pacing between calls.requested and calls.dispatch (DESIGN §3). */
#include "od/core.h"
#include "scheduler.h"

static const char usage[] =
    "usage: outdial-scheduler [--help]\n\n"
    "Consumes calls.requested (a consumer group: each copy owns the projects of its\n"
    "partitions), holds the calls due within the horizon in memory, and releases them\n"
    "through od_dispatch in PostgreSQL (pacing, DNC re-check, wallet, calling windows in\n"
    "the recipient's time zone) to calls.dispatch,\n"
    "fairly between a project's batches and single calls. PostgreSQL is the source of\n"
    "truth: a periodic sweep reloads what memory does not hold.";

static const od_conf_item_t conf_table[] = {
    OD_COMMON_CONF(sched_conf_t, 9101),
    OD_CONF_INT(sched_conf_t, sweep_ms, "OUTDIAL_SCHED_SWEEP_MS", "1000", 50, 60000,
                "how often PostgreSQL is swept for calls that memory does not hold (taken-over partitions, "
                "unpublished calls, calls coming within the horizon, calls never claimed)"),
    OD_CONF_INT(sched_conf_t, horizon_s, "OUTDIAL_SCHED_HORIZON_S", "300", 1, 86400,
                "calls due within this many seconds are held in memory; later ones stay in PostgreSQL only"),
    OD_CONF_INT(sched_conf_t, redispatch_s, "OUTDIAL_SCHED_REDISPATCH_S", "120", 5, 86400,
                "a call dispatched but never claimed by a dialer is dispatched again after this many seconds"),
    OD_CONF_INT(sched_conf_t, batch, "OUTDIAL_SCHED_BATCH", "50", 1, 1000,
                "most calls offered to one od_dispatch query (in fair order)"),
    OD_CONF_INT(sched_conf_t, sweep_limit, "OUTDIAL_SCHED_SWEEP_LIMIT", "10000", 100, 1000000,
                "most calls one sweep loads"),
    OD_CONF_INT(sched_conf_t, clock_offset_s, "OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S", "0", -400000000, 400000000,
                "tests only: seconds added to the clock on which calling windows are read (pacing and due "
                "times keep the real clock); leave 0 in production"),
};

int main(int argc, char **argv)
{
    static sched_conf_t conf;
    static od_svc_t svc;
    int rc = od_svc_init(&svc, "outdial-scheduler", argc, argv, usage, conf_table, OD_ARRAY_SIZE(conf_table), &conf,
                         &conf.common, 4096);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    if (sched_new(&svc, &conf) == NULL)
        return 1;
    /* the scheduler's memory goes with the process: od_svc_done stops the loop with handles still open */
    return od_svc_run(&svc);
}
