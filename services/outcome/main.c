/* outdial-outcome: applies call events to PostgreSQL; reaps calls of dead dialers. */
#include "od/config.h"
#include "od/core.h"
#include "outcome.h"

static const char usage[] =
    "usage: outdial-outcome [--help]\n"
    "Consumes calls.events and applies them to PostgreSQL in batches (states only move\n"
    "forward; completed calls are billed), and ends calls whose dialer's lease ran out.\n";

static const od_conf_item_t conf_table[] = {
    OD_COMMON_CONF(outcome_conf_t, 9103),
    OD_CONF_INT(outcome_conf_t, reaper_interval_ms, "OUTDIAL_REAPER_INTERVAL_MS", "1000", 50, 600000,
                "how often calls whose dialer's lease ran out are ended as internal_error, and batch counters are folded"),
    OD_CONF_INT(outcome_conf_t, batch_max, "OUTDIAL_OUTCOME_BATCH", "500", 1, 10000,
                "events applied per transaction at most"),
    OD_CONF_INT(outcome_conf_t, idem_keep_s, "OUTDIAL_IDEMPOTENCY_KEEP_S", "172800", 86400, 31536000,
                "Idempotency-Key records older than this are deleted (every 10 minutes)"),
};

int main(int argc, char **argv)
{
    static outcome_conf_t conf;
    static od_svc_t svc; /* static: what hangs off it stays reachable for LeakSanitizer after main returns */
    int rc = od_svc_init(&svc, "outdial-outcome", argc, argv, usage, conf_table, OD_ARRAY_SIZE(conf_table), &conf,
                         &conf.common, 4096);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    if (outcome_new(&svc, &conf) == NULL)
        return 1;
    return od_svc_run(&svc);
}
