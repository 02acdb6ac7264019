-- Internal errors (issue 7): every call that ends internal_error records what
-- failed ({"component", "reason", "dialer_id", "detected_by"}) in
-- calls.internal_error, in the transaction that writes the final state, and
-- is queued for the operator's alert: the outcome service claims it
-- (od_alerts_claim), writes the alert line in its log, counts it in
-- outdial_internal_errors_total{component}, sends it to the operator's webhook
-- when one is set, and marks it done (od_alerts_done). A claim is a lease
-- that doubles at each attempt (OUTDIAL_ALERT_WEBHOOK_RETRY_S, twice that,
-- ... at most an hour), so an alert whose sender died or whose webhook
-- failed is taken again; none is lost.

ALTER TABLE calls
    ADD COLUMN internal_error jsonb,
    ADD COLUMN alert_attempts integer NOT NULL DEFAULT 0,
    ADD COLUMN alert_next_at timestamptz,
    ADD COLUMN alerted_at timestamptz;
CREATE INDEX calls_alerts_due ON calls (alert_next_at) WHERE internal_error IS NOT NULL AND alerted_at IS NULL;

-- The rule for od_call_ended: record an internal error's component and reason.
CREATE OR REPLACE FUNCTION od_internal_error(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF c.final_state IS DISTINCT FROM 'internal_error' THEN
        RETURN '';
    END IF;
    UPDATE calls SET internal_error = jsonb_build_object(
                         'component', coalesce(e->>'component', 'dialer'),
                         'reason', coalesce(e->>'detail', 'no reason given'),
                         'dialer_id', c.dialer_id, 'detected_by', 'dialer'),
                     alert_next_at = now()
     WHERE id = c.id;
    RETURN '';
END
$$;

CREATE OR REPLACE FUNCTION od_call_ended(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN od_opt_out(c, e) || od_retry(c, e) || od_internal_error(c, e);
END
$$;

-- The lease reaper (002's), restated: the call's dialer died (or was cut
-- off) while it held the call; the outcome service found it.
CREATE OR REPLACE FUNCTION od_reap(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    WITH dead AS (
        SELECT id FROM calls
         WHERE status IN ('dialing', 'connected') AND lease_until < now()
         ORDER BY lease_until
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED),
    upd AS (
        UPDATE calls c SET status = 'failed', final_state = 'internal_error', ended_at = now(), lease_until = NULL,
                           duration_ms = 0, billed_s = 0,
                           internal_error = jsonb_build_object(
                               'component', 'dialer', 'reason', 'the dialer stopped renewing its lease',
                               'dialer_id', c.dialer_id, 'detected_by', 'outcome reaper'),
                           alert_next_at = now()
          FROM dead WHERE c.id = dead.id
        RETURNING c.id)
    INSERT INTO call_events (call_id, status, at, detail)
    SELECT id, 'failed', now(), 'internal_error: the dialer stopped renewing its lease' FROM upd;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Up to p_limit alerts due, each leased for p_lease_s × 2^(attempts so far)
-- (at most an hour). "attempt" is 1 the first time an alert is claimed: the
-- alert line and the metric are written then only.
CREATE OR REPLACE FUNCTION od_alerts_claim(p_limit integer, p_lease_s integer) RETURNS text
LANGUAGE sql AS $$
    WITH due AS (
        SELECT id FROM calls
         WHERE internal_error IS NOT NULL AND alerted_at IS NULL AND alert_next_at <= now()
         ORDER BY alert_next_at
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED),
    upd AS (
        UPDATE calls c SET alert_attempts = c.alert_attempts + 1,
                           alert_next_at = now() + make_interval(secs => least(p_lease_s * 2 ^ c.alert_attempts, 3600))
          FROM due WHERE c.id = due.id
        RETURNING c.*)
    SELECT coalesce(json_agg(json_build_object(
               'call_id', id, 'project_id', project_id, 'batch_id', batch_id, 'scenario', scenario,
               'attempt', alert_attempts, 'ended_at', od_ts(ended_at),
               'component', internal_error->>'component', 'reason', internal_error->>'reason',
               'dialer_id', internal_error->>'dialer_id', 'detected_by', internal_error->>'detected_by')
           ORDER BY ended_at), '[]')::text
      FROM upd
$$;

CREATE OR REPLACE FUNCTION od_alerts_done(p_ids uuid[]) RETURNS void
LANGUAGE sql AS $$
    UPDATE calls SET alerted_at = now(), alert_next_at = NULL WHERE id = ANY (p_ids) AND alerted_at IS NULL
$$;
