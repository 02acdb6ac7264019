/* outdial-outcome: applies call events to PostgreSQL; reaps calls of dead dialers. */
#include "od/config.h"
#include "od/core.h"
#include "outcome.h"

static const char usage[] =
    "usage: outdial-outcome [--help]\n"
    "Consumes calls.events and applies them to PostgreSQL in batches (states only move\n"
    "forward; completed calls are billed), ends calls whose dialer's lease ran out,\n"
    "sends the webhook deliveries, and raises an operator alert for every internal_error.\n";

static const od_conf_item_t conf_table[] = {
    OD_COMMON_CONF(outcome_conf_t, 9103),
    OD_CONF_INT(outcome_conf_t, reaper_interval_ms, "OUTDIAL_REAPER_INTERVAL_MS", "1000", 50, 600000,
                "how often calls whose dialer's lease ran out are ended as internal_error, and batch counters are folded"),
    OD_CONF_INT(outcome_conf_t, batch_max, "OUTDIAL_OUTCOME_BATCH", "500", 1, 10000,
                "events applied per transaction at most"),
    OD_CONF_INT(outcome_conf_t, idem_keep_s, "OUTDIAL_IDEMPOTENCY_KEEP_S", "172800", 86400, 31536000,
                "Idempotency-Key records older than this are deleted (every 10 minutes)"),
    OD_CONF_BOOL(outcome_conf_t, webhook_allow_private, "OUTDIAL_WEBHOOK_ALLOW_PRIVATE", "0",
                 "send webhooks to loopback, private and link-local addresses too (local runs only)"),
    OD_CONF_INT(outcome_conf_t, webhook_concurrency, "OUTDIAL_WEBHOOK_CONCURRENCY", "256", 1, 10000,
                "webhook requests in flight at once from this copy"),
    OD_CONF_INT(outcome_conf_t, webhook_per_endpoint, "OUTDIAL_WEBHOOK_PER_ENDPOINT", "8", 1, 1000,
                "webhook requests in flight at once to one endpoint, over every copy"),
    OD_CONF_INT(outcome_conf_t, webhook_per_project, "OUTDIAL_WEBHOOK_PER_PROJECT", "64", 1, 100000,
                "webhook requests in flight at once for one project, over every copy; free slots go to the project "
                "with the fewest in flight first"),
    OD_CONF_INT(outcome_conf_t, webhook_retention_days, "OUTDIAL_WEBHOOK_RETENTION_DAYS", "30", 1, 3650,
                "succeeded and failed webhook deliveries created longer ago than this many days are deleted from the "
                "delivery log"),
    OD_CONF_SECRET(outcome_conf_t, secret_key, "OUTDIAL_SECRET_KEY", "",
                   "32-byte key (64 hex digits or base64) that opens the webhook secrets stored encrypted; required"),
    OD_CONF_SECRET(outcome_conf_t, secret_key_prev, "OUTDIAL_SECRET_KEY_PREVIOUS", "",
                   "the key before OUTDIAL_SECRET_KEY while a key rotation is under way: it still opens the secrets "
                   "it sealed (empty: none)"),
    OD_CONF_INT(outcome_conf_t, webhook_timeout_ms, "OUTDIAL_WEBHOOK_TIMEOUT_MS", "15000", 100, 60000,
                "a webhook request that takes longer fails (and is retried)"),
    OD_CONF_INT(outcome_conf_t, webhook_poll_ms, "OUTDIAL_WEBHOOK_POLL_MS", "100", 10, 60000,
                "how often due webhook deliveries are looked for"),
    OD_CONF_INT(outcome_conf_t, webhook_disable_after_s, "OUTDIAL_WEBHOOK_DISABLE_AFTER_S", "432000", 0, 31536000,
                "an endpoint failing without a success for this long is disabled"),
    OD_CONF_STR(outcome_conf_t, webhook_retry_schedule, "OUTDIAL_WEBHOOK_RETRY_SCHEDULE",
                "5,300,1800,7200,18000,36000,86400",
                "seconds between a failed webhook attempt and the next (each +-20 %), then the delivery fails"),
    OD_CONF_STR(outcome_conf_t, alert_webhook_url, "OUTDIAL_ALERT_WEBHOOK_URL", "",
                "the operator's URL that gets a POST for each call ended internal_error (empty: log line and metric "
                "only)"),
    OD_CONF_SECRET(outcome_conf_t, alert_webhook_secret, "OUTDIAL_ALERT_WEBHOOK_SECRET", "",
                   "whsec_ secret that signs the alert webhooks like customer webhooks (empty: unsigned)"),
    OD_CONF_INT(outcome_conf_t, alert_webhook_retry_s, "OUTDIAL_ALERT_WEBHOOK_RETRY_S", "30", 1, 3600,
                "a failed alert webhook is sent again after this, then after twice as long each time (at most an "
                "hour), 10 attempts in all"),
    OD_CONF_DOUBLE(outcome_conf_t, rep_short_call_s, "OUTDIAL_REPUTATION_SHORT_CALL_S", "6", 0, 3600,
                   "caller reputation: an answered call that the callee hangs up within this many seconds is a short "
                   "hang-up (0: none is)"),
    OD_CONF_DOUBLE(outcome_conf_t, rep_threshold, "OUTDIAL_REPUTATION_THRESHOLD", "0.3", 0.01, 100,
                   "caller reputation: a caller ID whose last hour has (short hang-ups + spam) / answered calls at or "
                   "above this is slowed down (its pacing halved, down to 1/16)"),
    OD_CONF_INT(outcome_conf_t, rep_min_answered, "OUTDIAL_REPUTATION_MIN_ANSWERED", "20", 1, 1000000,
                "caller reputation: answered calls in the last hour a caller ID needs before it can be slowed down"),
    OD_CONF_INT(outcome_conf_t, rep_cooldown_s, "OUTDIAL_REPUTATION_COOLDOWN_S", "600", 0, 604800,
                "caller reputation: a caller ID's pacing changes at most once in this many seconds (slow-down or "
                "recovery, x1.5 up to normal once the rate is under half the threshold)"),
    OD_CONF_INT(outcome_conf_t, rep_interval_ms, "OUTDIAL_REPUTATION_INTERVAL_MS", "60000", 100, 3600000,
                "caller reputation: how often the rates are read (the /metrics gauges) and one copy decides the "
                "slow-downs and recoveries"),
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
