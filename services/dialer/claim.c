/*
 * calls.dispatch → claim. A call is dialed only after od_claim() committed
 * the compare-and-set queued → dialing under our lease (guarantee 1); the
 * message is done as soon as the claim is durable, whatever happens next.
 */
#include <jansson.h>
#include <string.h>

#include "dialer.h"
#include "od/core.h"
#include "od/log.h"

/* SQL errors that say the input itself is bad (data exception, integrity):
 * retrying can't help. Anything else (function missing during a migration,
 * serialization failure, shutdown) is retried: a dispatch is never dropped
 * for the database's sake. */
static int claim_poison(const PGresult *res)
{
    return od_pg_error_kind(res) == OD_PG_ERR_INPUT;
}

static void poison(dialer_t *d, od_ktoken_t tok, const char *call_id, const char *why)
{
    od_log(OD_LOG_ERROR, call_id, "poison dispatch message at partition %d offset %lld skipped: %s",
           (int)tok.partition, (long long)tok.offset, why);
    od_metric_add(d->m.poison, 1);
    od_kcons_done(d->kcons, tok);
}

void dialer__on_message(void *arg, const rd_kafka_message_t *msg, od_ktoken_t tok)
{
    dialer_t *d = arg;
    if (d->draining)
        return; /* not done: redelivered to another dialer */

    json_error_t jerr;
    json_t *root = json_loadb(msg->payload, msg->len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *v;
    const char *id;
    if (root == NULL || !json_is_object(root)) {
        poison(d, tok, NULL, root == NULL ? jerr.text : "not a JSON object");
    } else if ((v = json_object_get(root, "v")) == NULL || !json_is_integer(v) || json_integer_value(v) != 1) {
        poison(d, tok, NULL, "unsupported message version");
    } else if ((v = json_object_get(root, "type")) == NULL || !json_is_string(v) ||
               strcmp(json_string_value(v), "call.dispatch") != 0) {
        poison(d, tok, NULL, "not a call.dispatch message");
    } else if ((v = json_object_get(root, "call_id")) == NULL || !json_is_string(v) ||
               od_uuid_check(id = json_string_value(v), json_string_length(v)) != 0) {
        poison(d, tok, NULL, "bad call_id");
    } else {
        /* the rest of the message is informative: the claim returns the call as stored */
        dcall_t *call = dialer__call_new(d, id, tok);
        /* a claim whose answer was lost (connection broken after the commit) is retried with the
         * same token and recognised; a redelivered message is a new attempt with a new token */
        od_uuid7(call->claim_token);
        od_log(OD_LOG_DEBUG, call->id, "dispatch received (partition %d offset %lld)", (int)tok.partition,
               (long long)tok.offset);
        dialer__claim(call);
    }
    json_decref(root);
}

static void on_claim_retry(uv_timer_t *t)
{
    dcall_t *call = t->data;
    if (call->dropped || call->d->draining)
        dialer__call_free(call);
    else
        dialer__claim(call);
}

static void retry_later(dcall_t *call, const char *why)
{
    if (call->dropped || call->d->draining) {
        /* not done: the message goes to whoever owns the partition next */
        od_log(OD_LOG_INFO, call->id, "claim not made (%s): handed back", why);
        dialer__call_free(call);
        return;
    }
    unsigned ms = dialer__backoff(&call->backoff_ms);
    od_log(OD_LOG_WARN, call->id, "claim failed (%s): retrying in %u ms", why, ms);
    uv_timer_start(&call->timer, on_claim_retry, ms, 0);
}

/* od_claim's {"wait_ms": N}: N (>= 0); -1 for anything else (a call, to dial) */
static long long claim_wait_ms(const char *text)
{
    if (strncmp(text, "{\"wait_ms\"", 10) != 0)
        return -1;
    json_t *o = json_loads(text, 0, NULL);
    json_t *v = json_object_get(o, "wait_ms");
    long long ms = json_is_integer(v) && json_integer_value(v) >= 0 ? (long long)json_integer_value(v) : -1;
    json_decref(o);
    return ms < 0 ? -1 : OD_MIN(ms, 60000LL);
}

static void on_claim(void *arg, int status, PGresult *res)
{
    dcall_t *call = arg;
    dialer_t *d = call->d;
    call->claim_inflight = 0;
    switch (status) {
    case OD_PG_OK:
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
            od_log(OD_LOG_INFO, call->id, "already claimed or no longer queued: not dialed");
            od_metric_add(d->m.conflicts, 1);
            od_kcons_done(d->kcons, call->tok);
            dialer__call_free(call);
            return;
        }
        long long wait_ms = claim_wait_ms(PQgetvalue(res, 0, 0));
        if (wait_ms >= 0) {
            /* too early for the project's rate at the dial (020_dial_pacing.sql): a dispatch that
             * waited in Kafka; ask again then (the message stays ours, not done) */
            od_log(OD_LOG_DEBUG, call->id, "claim deferred %lld ms by the project's pacing", wait_ms);
            od_metric_add(d->m.paced, 1);
            uv_timer_start(&call->timer, on_claim_retry, (uint64_t)wait_ms, 0);
            return;
        }
        /* the claim is committed: this dialer owns the call, even while draining or revoked */
        od_kcons_done(d->kcons, call->tok);
        dialer__lease_claimed(call);
        dialer__dial(call, PQgetvalue(res, 0, 0));
        return;
    case OD_PG_EQUERY:
        if (claim_poison(res)) {
            poison(d, call->tok, call->id, od_pg_errmsg(res));
            dialer__call_free(call);
            return;
        }
        retry_later(call, od_pg_errmsg(res));
        return;
    default:
        retry_later(call, "postgresql unavailable");
        return;
    }
}

void dialer__claim(dcall_t *call)
{
    dialer_t *d = call->d;
    const char *params[4] = {call->id, d->dialer_id, d->lease_s_text, call->claim_token};
    call->claim_inflight = 1;
    call->lease_sent_ms = od_mono_ms(); /* PostgreSQL's lease starts later than this: a safe lower bound */
    if (od_pg_query(d->pg, "claim", 4, params, on_claim, call) != 0) {
        call->claim_inflight = 0;
        retry_later(call, "no postgresql connection");
    }
}

void dialer__on_revoke(void *arg, const rd_kafka_topic_partition_list_t *parts)
{
    dialer_t *d = arg;
    for (dcall_t *call = d->calls, *next; call != NULL; call = next) {
        next = call->next;
        if (call->state != DCALL_CLAIMING)
            continue; /* claimed calls are ours through the lease, whoever owns the partition */
        for (int i = 0; i < parts->cnt; i++) {
            if (parts->elems[i].partition != call->tok.partition)
                continue;
            if (call->claim_inflight) {
                call->dropped = 1; /* its answer decides: dial if claimed, else hand back */
            } else {
                uv_timer_stop(&call->timer);
                dialer__call_free(call);
            }
            break;
        }
    }
}
