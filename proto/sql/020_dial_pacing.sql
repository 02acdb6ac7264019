-- 020: a project's pacing holds at the dial too.
--
-- od_dispatch paces a project's dispatches (a GCRA with no burst). A dispatch
-- can still wait in Kafka: on a dialer that died, until the group hands its
-- partitions to another (the session timeout, 10 s), or behind a dialer's
-- full slots. Those calls were then dialed together, and a minute could hold
-- more dials than the project's rate (the scale-out test measured 1.18 x).
--
-- So the claim, the door to every dial, keeps a second GCRA per project on
-- the claim time (project_dial_pacing, a row of its own so that claims never
-- wait for od_dispatch's lock on project_pacing), with a burst tolerance of
-- one second for the claims' own jitter. A claim that comes too early is not
-- made yet: the dialer is told how long to wait and asks again (the call
-- stays dispatched to it; the message is not done). In any 60 s, a project's
-- claims are at most its rate + rate/60 + 1.
--
-- (A first version handed such calls back to the scheduler instead. Under
-- load the claims' delays vary by more than a second, and every hand-back
-- spent a dispatch of the project's rate again: 6,900 hand-backs for 10,000
-- calls in the scale-out test, and the slowest projects fell far behind.)

CREATE TABLE project_dial_pacing (
    project_id uuid PRIMARY KEY REFERENCES projects ON DELETE CASCADE,
    dial_tat   timestamptz NOT NULL
);

-- 012's od_claim is the compare-and-set itself: renamed od_claim_cas, it is
-- called by the new od_claim once the dial-side GCRA lets the claim through.
-- od_claim returns the call (claimed), {"wait_ms": N} (too early for the
-- project's rate: ask again in N ms), or NULL (already claimed, no longer
-- queued). A claim retried with its token after a lost answer finds the call
-- 'dialing' and skips the gate: it was counted the first time.
ALTER FUNCTION od_claim(uuid, text, integer, uuid) RENAME TO od_claim_cas;

CREATE FUNCTION od_claim(p_id uuid, p_dialer text, p_lease_s integer, p_token uuid) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    v_proj uuid;
    v_rate integer;
    v_tat  timestamptz;
    now_   timestamptz;
    r      json;
BEGIN
    SELECT x.project_id, p.pacing_per_min INTO v_proj, v_rate
      FROM calls x JOIN projects p ON p.id = x.project_id
     WHERE x.id = p_id AND x.status = 'queued' AND x.dispatched_at IS NOT NULL;
    IF FOUND THEN
        SELECT dial_tat INTO v_tat FROM project_dial_pacing WHERE project_id = v_proj FOR UPDATE;
        IF NOT FOUND THEN
            INSERT INTO project_dial_pacing (project_id, dial_tat) VALUES (v_proj, '-infinity')
            ON CONFLICT DO NOTHING;
            SELECT dial_tat INTO v_tat FROM project_dial_pacing WHERE project_id = v_proj FOR UPDATE;
        END IF;
        now_ := clock_timestamp(); -- after the lock: the claims of a project are spaced in lock order
        IF now_ < v_tat - interval '1 second' THEN
            RETURN json_build_object('wait_ms',
                                     ceil(extract(epoch FROM v_tat - interval '1 second' - now_) * 1000)::bigint);
        END IF;
    END IF;
    r := od_claim_cas(p_id, p_dialer, p_lease_s, p_token);
    IF r IS NOT NULL AND v_proj IS NOT NULL THEN
        UPDATE project_dial_pacing SET dial_tat = greatest(dial_tat, now_) + make_interval(secs => 60.0 / v_rate)
         WHERE project_id = v_proj;
    END IF;
    RETURN r;
END
$$;
