-- 021: the claim, the last door before a dial: a lease is proven only while
-- it is live, and the do-not-call list and the calling windows are checked
-- again (issue 18).
--
-- A lease (finding 3).
-- A dialer cut off from PostgreSQL past its lease went on dialing: the
-- reaper failed the call (internal_error), the customer retried it, and the
-- person was called twice. The dialer now keeps a local deadline per call
-- and asks PostgreSQL which leases it still holds; here the two statements
-- it relies on stop answering for leases that ran out:
--
-- - od_lease_renew renews only leases that have not run out, and returns the
--   ids it renewed (was: a count), so the dialer hangs up the others at once.
--   An expired lease belongs to the reaper from then on, renewed or not.
-- - od_claim_cas: a claim retried with its token (its answer was lost)
--   returns the call only while this dialer's lease on it is live; else the
--   reaper owns it and the dialer must not dial it.
--
-- Re-checked at the dial. A dispatch can wait in Kafka (a dialer's backlog,
-- a rebalance) after od_dispatch checked the call; what changed meanwhile
-- is checked again here, in the claim's transaction:
-- - a number put on the DNC list meanwhile: the call ends dnc_blocked, as at
--   dispatch, and is not dialed;
-- - calling windows (the ones od_dispatch applied, kept on the call) closed
--   meanwhile: the call goes back to the scheduler (not dispatched, due at
--   the next opening, window_held_until set), as a hold at dispatch does.
--   The windows' clock is the session's test clock when the dialer sets one
--   (outdial.test_clock_offset_ms, from OUTDIAL_DIALER_TEST_CLOCK_OFFSET_S,
--   as the scheduler's OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S); else now.
--
-- (Both are restated whole, as the migrations before this one do; issue 19
-- moves every function to one file of its own.)

DROP FUNCTION od_lease_renew(text, uuid[], integer);

CREATE FUNCTION od_lease_renew(p_dialer text, p_ids uuid[], p_lease_s integer) RETURNS uuid[]
LANGUAGE sql AS $$
    -- rows are locked in id order, as od_apply_events does: no deadlock between them
    WITH mine AS (
        SELECT id FROM calls
         WHERE id = ANY (p_ids) AND dialer_id = p_dialer AND status IN ('dialing', 'connected')
           AND lease_until > now()
         ORDER BY id FOR UPDATE),
    u AS (
        UPDATE calls c SET lease_until = now() + make_interval(secs => p_lease_s)
          FROM mine WHERE c.id = mine.id
        RETURNING c.id)
    SELECT coalesce(array_agg(id), '{}') FROM u
$$;

CREATE OR REPLACE FUNCTION od_claim_cas(p_id uuid, p_dialer text, p_lease_s integer, p_token uuid) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    c      calls;
    v_open timestamptz;
    wnow   timestamptz := clock_timestamp()
                          + make_interval(secs => coalesce(nullif(current_setting('outdial.test_clock_offset_ms', true),
                                                                  ''), '0')::bigint / 1000.0);
BEGIN
    SELECT * INTO c FROM calls WHERE id = p_id AND status = 'queued' AND dispatched_at IS NOT NULL FOR UPDATE;
    IF FOUND THEN
        IF EXISTS (SELECT 1 FROM dnc d WHERE d.project_id = c.project_id AND d.phone = c.phone) THEN
            UPDATE calls SET status = 'canceled', final_state = 'dnc_blocked', ended_at = now() WHERE id = p_id;
            INSERT INTO call_events (call_id, status, at, detail)
            VALUES (p_id, 'canceled', now(),
                    'dnc_blocked: the number was put on the do-not-call list while the call waited to be dialed');
            RETURN NULL;
        END IF;
        IF c.window_rules IS NOT NULL THEN
            v_open := od_window_next_open(c.window_rules, c.window_zones, wnow);
            IF v_open IS NULL OR v_open > wnow THEN
                -- no window within 15 days: due now, so that od_dispatch decides (it cancels)
                UPDATE calls SET dispatched_at = NULL, due_at = now() + (coalesce(v_open, wnow) - wnow),
                                 window_held_until = coalesce(v_open, window_held_until)
                 WHERE id = p_id;
                RETURN NULL;
            END IF;
        END IF;
    END IF;
    UPDATE calls SET status = 'dialing', dialed_at = now(), dialer_id = p_dialer, claim_token = p_token,
                     lease_until = now() + make_interval(secs => p_lease_s),
                     (disclosure, opt_out_script) = (
                         SELECT CASE WHEN s.disclosure_enabled THEN s.disclosure END, s.opt_out_script
                           FROM scenarios s WHERE s.project_id = calls.project_id AND s.idn = calls.scenario)
     WHERE id = p_id AND status = 'queued' AND dispatched_at IS NOT NULL
       AND (batch_id IS NULL OR NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = calls.batch_id
                                                                     AND b.status = 'paused'))
    RETURNING * INTO c;
    IF FOUND THEN
        INSERT INTO call_events (call_id, status, at, detail)
        VALUES (c.id, 'dialing', now(), 'claimed by ' || p_dialer);
    ELSE
        -- the same attempt asking again: ours only while the lease it took is live
        SELECT * INTO c FROM calls
         WHERE id = p_id AND claim_token = p_token AND status = 'dialing' AND dialer_id = p_dialer
           AND lease_until > now();
        IF NOT FOUND THEN
            UPDATE calls SET dispatched_at = NULL
             WHERE id = p_id AND status = 'queued' AND batch_id IN (SELECT id FROM batches WHERE status = 'paused');
            RETURN NULL;
        END IF;
    END IF;
    RETURN json_build_object('call_id', c.id, 'project_id', c.project_id, 'phone', c.phone, 'scenario', c.scenario,
                             'disclosure', c.disclosure, 'disclosure_enabled', c.disclosure IS NOT NULL,
                             'opt_out_script', c.opt_out_script, 'metadata', c.metadata, 'caller_id', c.caller_id);
END
$$;
