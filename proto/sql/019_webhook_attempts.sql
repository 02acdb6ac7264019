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
--
-- The claim is its own statement, and the attempts are read by the next one:
-- a single statement joining the claim's answer to webhook_deliveries read
-- the table with the snapshot taken before the claim ran, so a delivery
-- committed in between was leased by the claim but missing from the join's
-- answer: never sent until its lease ran out (test_webhooks timed out on
-- it, twice, under load). The LEFT JOIN keeps every leased delivery anyway.
LANGUAGE plpgsql AS $$
DECLARE
    claimed json;
BEGIN
    IF jsonb_array_length(p_results) > 0 THEN
        PERFORM od_webhook_results(p_owner, p_results, p_schedule_s, p_disable_after_s);
    END IF;
    claimed := od_webhook_claim(p_owner, p_limit, p_per_endpoint, p_lease_s);
    RETURN (SELECT coalesce(json_agg((c.v::jsonb || jsonb_build_object('attempts', coalesce(d.attempts, 0)))::json
                                     ORDER BY c.n), '[]')
              FROM json_array_elements(claimed) WITH ORDINALITY AS c(v, n)
              LEFT JOIN webhook_deliveries d ON d.id = (c.v->>'id')::uuid);
END
$$;
