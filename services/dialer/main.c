/* outdial-dialer: claims dispatched calls, dials them, reports their events. */
#include <stdio.h>

#include "dialer.h"
#include "od/config.h"
#include "od/core.h"

static const char usage[] =
    "usage: outdial-dialer [--help]\n"
    "Consumes calls.dispatch, claims each call in PostgreSQL (at most once), dials it\n"
    "through the provider and sends its events to calls.events.\n";

static const od_conf_item_t conf_table[] = {
    OD_COMMON_CONF(dialer_conf_t, 9102),
    OD_CONF_INT(dialer_conf_t, max_calls, "OUTDIAL_DIALER_MAX_CALLS", "100", 1, 100000,
                "calls handled at once (from receipt of the dispatch to the lease release); "
                "consumption pauses at the limit"),
    OD_CONF_INT(dialer_conf_t, lease_s, "OUTDIAL_DIALER_LEASE_S", "30", 3, 3600,
                "lease of a claimed call, renewed every third of it; a dialer silent that long "
                "has its calls ended as internal_error"),
    OD_CONF_STR(dialer_conf_t, dialer_id, "OUTDIAL_DIALER_ID", "",
                "this dialer's id in the claims (empty: <hostname>-<pid>)"),
    OD_CONF_STR(dialer_conf_t, provider, "OUTDIAL_DIALER_PROVIDER", "sim", "telephony provider: sim"),
    OD_CONF_DOUBLE(dialer_conf_t, sim_scale, "OUTDIAL_SIM_TIME_SCALE", "1.0", 0, 1000,
                   "sim: factor on the realistic ring and talk times (0 = immediate)"),
    OD_CONF_STR(dialer_conf_t, sim_dial_log, "OUTDIAL_SIM_DIAL_LOG", NULL,
                "sim: file that gets one line \"<time> <call_id> <phone>\" per dial (empty: none)"),
};

int main(int argc, char **argv)
{
    static dialer_conf_t conf;
    static od_svc_t svc; /* static: what hangs off it stays reachable for LeakSanitizer after main returns */
    int rc = od_svc_init(&svc, "outdial-dialer", argc, argv, usage, conf_table, OD_ARRAY_SIZE(conf_table), &conf,
                         &conf.common, 4096);
    if (rc != 0)
        return rc < 0 ? 2 : 0;
    if (dialer_new(&svc, &conf) == NULL)
        return 1;
    return od_svc_run(&svc);
}
