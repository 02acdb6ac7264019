-- One place for what follows a call's end. od_apply_events (010's, restated
-- here for the last time) calls od_call_ended(call, event) once the final
-- state is written, before the final event is stored; each rule that acts on
-- a call's end (opt-out here; retries, spend caps later) is a function of its
-- own, and a later migration adds one by restating only od_call_ended. What
-- od_call_ended returns is appended to the final event's detail.

-- Opt-out: the engine's report said the callee opted out (proto/engine.md).
-- The number goes on the project's DNC list, source 'opt_out', with the call
-- as proof; the audit log's dnc.added entry names the outcome service.
CREATE OR REPLACE FUNCTION od_opt_out(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF (e->>'opted_out')::boolean IS NOT TRUE THEN
        RETURN '';
    END IF;
    PERFORM set_config('outdial.actor', '{"type": "system", "service": "outcome"}', true);
    INSERT INTO dnc (project_id, phone, source, call_id) VALUES (c.project_id, c.phone, 'opt_out', c.id)
    ON CONFLICT (project_id, phone) DO NOTHING;
    PERFORM set_config('outdial.actor', '', true);
    RETURN '; the callee opted out: the number is on the DNC list';
END
$$;

CREATE OR REPLACE FUNCTION od_call_ended(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN od_opt_out(c, e);
END
$$;

CREATE OR REPLACE FUNCTION od_apply_events(p_events jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e       jsonb;
    c       calls;
    at_     timestamptz;
    billed  integer;
    cost    bigint;
    applied integer := 0;
    more    text;
BEGIN
    PERFORM 1 FROM calls WHERE id IN (SELECT (x->>'call_id')::uuid FROM jsonb_array_elements(p_events) x)
     ORDER BY id FOR UPDATE;
    FOR e IN SELECT * FROM jsonb_array_elements(p_events) LOOP
        at_ := to_timestamp((e->>'at_us')::double precision / 1e6);
        IF e->>'status' = 'dialing' THEN
            IF EXISTS (SELECT 1 FROM calls WHERE id = (e->>'call_id')::uuid AND status = 'dialing')
               AND NOT EXISTS (SELECT 1 FROM call_events WHERE call_id = (e->>'call_id')::uuid
                                  AND status = 'dialing' AND detail IS NOT DISTINCT FROM e->>'detail') THEN
                INSERT INTO call_events (call_id, status, at, detail)
                VALUES ((e->>'call_id')::uuid, 'dialing', at_, e->>'detail');
                applied := applied + 1;
            END IF;
            CONTINUE;
        END IF;
        IF e->>'final_state' = 'completed' AND e->>'duration_ms' IS NOT NULL THEN
            billed := ceil((e->>'duration_ms')::numeric / 1000);
        ELSE
            billed := 0;
        END IF;
        cost := 0;
        IF billed > 0 THEN
            SELECT ceil(billed * p.price_per_min_micros / 60.0)::bigint INTO cost
              FROM projects p JOIN calls k ON k.project_id = p.id WHERE k.id = (e->>'call_id')::uuid;
        END IF;
        UPDATE calls SET
            status = e->>'status',
            final_state = e->>'final_state',
            outcome = e->>'outcome',
            goal_completed = (e->>'goal_completed')::boolean,
            connected_at = CASE WHEN e->>'status' = 'connected' THEN at_ ELSE connected_at END,
            ended_at = CASE WHEN e->>'final_state' IS NOT NULL THEN at_ ELSE ended_at END,
            duration_ms = CASE WHEN e->>'final_state' IS NOT NULL
                               THEN coalesce((e->>'duration_ms')::bigint, 0) ELSE duration_ms END,
            billed_s = CASE WHEN e->>'final_state' IS NOT NULL THEN billed ELSE billed_s END,
            cost_micros = CASE WHEN billed > 0 THEN cost ELSE cost_micros END,
            lease_until = CASE WHEN e->>'final_state' IS NOT NULL THEN NULL ELSE lease_until END
         WHERE id = (e->>'call_id')::uuid AND status = ANY ((e->>'allowed_from')::text[])
        RETURNING * INTO c;
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        applied := applied + 1;
        IF billed > 0 THEN
            UPDATE projects SET wallet_micros = wallet_micros - cost WHERE id = c.project_id;
            INSERT INTO wallet_ledger (project_id, call_id, amount_micros, reason)
            VALUES (c.project_id, c.id, -cost, 'call ' || billed || ' s');
        END IF;
        more := CASE WHEN c.final_state IS NOT NULL THEN od_call_ended(c, e) ELSE '' END;
        INSERT INTO call_events (call_id, status, at, detail)
        VALUES (c.id, c.status, at_, coalesce(c.final_state || CASE WHEN e->>'detail' IS NOT NULL
                                                                    THEN ': ' || (e->>'detail') ELSE '' END,
                                              e->>'detail') || more);
    END LOOP;
    RETURN applied;
END
$$;
