-- Webhook metrics (issue 8): each leased delivery carries the number of
-- attempts already recorded for it, so that the sender can tell a retry (an
-- attempt after the first: outdial_webhook_retries_total) and a delivery's
-- last attempt (outdial_webhook_deliveries_total{result="failed"} when a
-- retriable failure finds the schedule used up, as od_webhook_results
-- decides) without another round trip. Only the answer of od_webhook_cycle
-- changes: od_webhook_claim's lease and order are kept.
CREATE OR REPLACE FUNCTION od_webhook_cycle(p_owner text, p_results jsonb, p_schedule_s integer[],
                                            p_disable_after_s integer, p_limit integer, p_per_endpoint integer,
                                            p_lease_s integer) RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_array_length(p_results) > 0 THEN
        PERFORM od_webhook_results(p_owner, p_results, p_schedule_s, p_disable_after_s);
    END IF;
    RETURN (SELECT coalesce(json_agg((c.v::jsonb || jsonb_build_object('attempts', d.attempts))::json
                                     ORDER BY c.n), '[]')
              FROM json_array_elements(od_webhook_claim(p_owner, p_limit, p_per_endpoint, p_lease_s))
                   WITH ORDINALITY AS c(v, n)
              JOIN webhook_deliveries d ON d.id = (c.v->>'id')::uuid);
END
$$;
