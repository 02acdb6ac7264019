-- Quiet hours per recipient (docs/quiet-hours.md): calling windows in the
-- recipient's local time, set on a project and overridden by a batch. The
-- scheduler looks the number's time zones up in C (od_phone_time_zones:
-- libphonenumber's time-zone map) and hands them to od_dispatch, which
-- applies the windows with PostgreSQL's time-zone code on the system tzdata
-- (Debian builds PostgreSQL --with-system-tzdata), in the transaction that
-- dispatches the call: a call outside its window is held (its due_at moves
-- to the opening, scheduled_for stays as asked) and the sweep brings it back
-- then. Each call records the zones and the windows it was held or
-- dispatched by.
--
-- Restated here: od_sched_sweep (returns the phone), od_dispatch (zones and
-- the test clock offset). The call object's calling_window (od_call_json) and
-- GET /v1/project's calling_windows (od_project_json) are in 014; a batch's
-- calling_windows (od_batch_create, od_batch_json) in 017, which restate
-- those functions after this.

-- The canonical form of od_window_parse (libs/window): [{"days": ["mon", ...],
-- "from": "HH:MM", "to": "HH:MM"}, ...]; NULL: no windows (a batch: the project's).
ALTER TABLE projects ADD COLUMN calling_windows jsonb CHECK (jsonb_typeof(calling_windows) = 'array');
ALTER TABLE batches ADD COLUMN calling_windows jsonb CHECK (jsonb_typeof(calling_windows) = 'array');

ALTER TABLE calls
    ADD COLUMN window_zones text[],           -- the recipient's zones the windows were applied in
    ADD COLUMN window_rules jsonb,            -- the windows applied (NULL: none)
    ADD COLUMN window_source text CHECK (window_source IN ('project', 'batch')),
    ADD COLUMN window_held_until timestamptz; -- the last hold: the opening the call waited for

-- 1 if PostgreSQL knows the zone (a zone of libphonenumber's map missing from
-- this server's tzdata must not stop a project's dispatching).
CREATE OR REPLACE FUNCTION od_tz_known(p_zone text) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM now() AT TIME ZONE p_zone;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END
$$;

-- The zones to apply windows in, from the scheduler's "Zone,Zone" (sorted,
-- from od_phone_time_zones): those this server knows, or {Etc/Unknown}
-- (libphonenumber's name for "no zone known"), applied as UTC.
CREATE OR REPLACE FUNCTION od_window_zones(p_zones text) RETURNS text[]
LANGUAGE sql STABLE AS $$
    SELECT coalesce(array_agg(z ORDER BY z), '{Etc/Unknown}')
      FROM unnest(string_to_array(nullif(p_zones, ''), ',')) z
     WHERE z <> 'Etc/Unknown' AND od_tz_known(z)
$$;

-- The open intervals of the windows in one zone, as instants, over the local
-- days from the day before p_from to p_days days after it. A local time that
-- a DST change skips (e.g. 02:30 on the US March change) is read with the
-- offset before the change, as PostgreSQL reads such a time: it falls that
-- much later on the clock.
CREATE OR REPLACE FUNCTION od_window_intervals(p_windows jsonb, p_zone text, p_from timestamptz, p_days integer)
RETURNS TABLE (s timestamptz, e timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT (d + (w->>'from')::time) AT TIME ZONE z.name,
           (d + (w->>'to')::time) AT TIME ZONE z.name  -- '24:00'::time is the end of the day
      FROM (SELECT CASE WHEN p_zone = 'Etc/Unknown' THEN 'UTC' ELSE p_zone END AS name) z,
           LATERAL (SELECT (p_from AT TIME ZONE z.name)::date + k AS d          -- local dates (date + time:
                      FROM generate_series(-1, p_days) k) days,                -- a local timestamp)
           jsonb_array_elements(p_windows) w
     WHERE w->'days' ? (ARRAY['mon','tue','wed','thu','fri','sat','sun'])[extract(isodow FROM d)::integer]
$$;

-- The first instant at or after p_at at which every zone of p_zones is
-- inside one of the windows (for a number whose zone is ambiguous, the most
-- restrictive reading: the call may ring only when it is allowed wherever
-- the recipient may be). p_at itself when the windows are open; NULL when
-- they do not open within p_days days. Pure: tested with fixed instants
-- (tests/system/test_quiet_hours.py).
CREATE OR REPLACE FUNCTION od_window_next_open(p_windows jsonb, p_zones text[], p_at timestamptz,
                                               p_days integer DEFAULT 15) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    WITH iv AS (
        SELECT z.zone, i.s, i.e
          FROM (SELECT DISTINCT unnest(p_zones) AS zone) z,
               LATERAL od_window_intervals(p_windows, z.zone, p_at, p_days) i
         WHERE i.e > p_at AND i.s < i.e
    )
    -- the set is a union of intervals [s, e): its first instant >= p_at is p_at or some start
    SELECT min(c.t)
      FROM (SELECT p_at AS t UNION SELECT iv.s FROM iv WHERE iv.s > p_at) c
     WHERE NOT EXISTS (SELECT 1 FROM (SELECT DISTINCT unnest(p_zones) AS zone) z
                        WHERE NOT EXISTS (SELECT 1 FROM iv
                                           WHERE iv.zone = z.zone AND iv.s <= c.t AND c.t < iv.e))
$$;

-- The call's calling window as GET /v1/calls/{id} shows it (null: none applied yet).
CREATE OR REPLACE FUNCTION od_call_window_json(c calls) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN c.window_rules IS NOT NULL OR c.window_held_until IS NOT NULL THEN
        json_build_object('source', c.window_source, 'zones', c.window_zones, 'windows', c.window_rules,
                          'held_until', od_ts(c.window_held_until))
    END
$$;

-- The sweep returns each call's phone: the scheduler looks its time zones up.
DROP FUNCTION od_sched_sweep(uuid[], integer, integer, integer);
CREATE FUNCTION od_sched_sweep(p_projects uuid[], p_horizon_s integer, p_redispatch_s integer, p_limit integer)
RETURNS TABLE (id uuid, project_id uuid, batch_id uuid, due_ms bigint, unpublished boolean, phone text)
LANGUAGE sql STABLE AS $$
    SELECT c.id, c.project_id, c.batch_id, floor(extract(epoch FROM c.due_at) * 1000)::bigint,
           c.published_at IS NULL AND c.created_at < now() - interval '5 seconds', c.phone
      FROM calls c
     WHERE c.project_id = ANY (p_projects) AND c.status = 'queued'
       AND c.due_at <= now() + make_interval(secs => p_horizon_s)
       AND (c.dispatched_at IS NULL OR c.dispatched_at < now() - make_interval(secs => p_redispatch_s))
       AND (c.batch_id IS NULL OR NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = c.batch_id AND b.status = 'paused'))
     ORDER BY c.due_at, c.id
     LIMIT p_limit
$$;

-- od_dispatch with calling windows. p_zones[i]: the time zones of the call
-- p_ids[i] ("Zone,Zone" from od_phone_time_zones; '' unknown). The windows
-- are the batch's, else the project's; they are read on the clock
-- now + p_clock_offset_ms, which only tests set (OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S:
-- "it is 20:59 in New York" without waiting for it); pacing and due times
-- keep the real clock. A call outside its window answers "later" with its
-- new due_ms: due_at moves to the opening (dispatched_at cleared, so a late
-- claim of an older dispatch message fails), the zones and windows are
-- recorded. Windows that never open within 15 days for the number's zones
-- end the call canceled ("no_window"). Otherwise as in 004.
DROP FUNCTION od_dispatch(uuid, uuid[], integer);
CREATE FUNCTION od_dispatch(p_project uuid, p_ids uuid[], p_redispatch_s integer, p_zones text[],
                            p_clock_offset_ms bigint) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    proj    projects;
    now_    timestamptz := clock_timestamp();
    wnow    timestamptz := clock_timestamp() + make_interval(secs => coalesce(p_clock_offset_ms, 0) / 1000.0);
    t       interval;
    tat     timestamptz;
    cid     uuid;
    c       calls;
    b       batches;
    v_bid   uuid;
    out     jsonb := '[]'::jsonb;
    v_ok    boolean := false;
    v_wake  timestamptz;
    v_rules jsonb;
    v_src   text;
    v_zones text[];
    v_open  timestamptz;
BEGIN
    SELECT * INTO proj FROM projects WHERE id = p_project;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('r', 'gone', 'calls', '[]'::jsonb);
    END IF;
    IF proj.wallet_micros <= 0 THEN
        RETURN jsonb_build_object('r', 'hold', 'calls', '[]'::jsonb);
    END IF;
    t := make_interval(secs => 60.0 / proj.pacing_per_min);
    -- the pacing state is locked: two schedulers owning the project for a moment
    -- (a rebalance) still pace it as one
    SELECT pace_tat INTO tat FROM project_pacing WHERE project_id = p_project FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO project_pacing (project_id, pace_tat) VALUES (p_project, now_) ON CONFLICT DO NOTHING;
        SELECT pace_tat INTO tat FROM project_pacing WHERE project_id = p_project FOR UPDATE;
    END IF;
    PERFORM 1 FROM batches WHERE id IN (SELECT x.batch_id FROM calls x WHERE x.id = ANY (p_ids)) ORDER BY id
        FOR UPDATE;
    FOR i IN 1 .. coalesce(cardinality(p_ids), 0) LOOP
        cid := p_ids[i];
        IF now_ < tat THEN
            out := out || jsonb_build_object('id', cid, 'r', 'wait');
            v_wake := least(v_wake, tat);
            CONTINUE;
        END IF;
        SELECT x.batch_id INTO v_bid FROM calls x WHERE x.id = cid;
        b := NULL;
        IF v_bid IS NOT NULL THEN
            SELECT * INTO b FROM batches WHERE id = v_bid;
            IF b.status = 'paused' THEN
                out := out || jsonb_build_object('id', cid, 'r', 'gone');
                CONTINUE;
            END IF;
            IF now_ < b.pace_tat THEN
                out := out || jsonb_build_object('id', cid, 'r', 'wait');
                v_wake := least(v_wake, greatest(tat, b.pace_tat));
                CONTINUE;
            END IF;
        END IF;
        -- calling windows: the batch's override the project's
        v_rules := coalesce(b.calling_windows, proj.calling_windows);
        v_src := CASE WHEN b.calling_windows IS NOT NULL THEN 'batch' WHEN v_rules IS NOT NULL THEN 'project' END;
        v_zones := CASE WHEN v_rules IS NOT NULL THEN od_window_zones(p_zones[i]) END;
        v_open := CASE WHEN v_rules IS NOT NULL THEN od_window_next_open(v_rules, v_zones, wnow) END;
        IF v_rules IS NOT NULL AND v_open IS NULL THEN
            UPDATE calls SET status = 'canceled', final_state = 'canceled', ended_at = now_, window_zones = v_zones,
                             window_rules = v_rules, window_source = v_src
             WHERE id = cid AND project_id = p_project AND status = 'queued'
               AND (dispatched_at IS NULL OR dispatched_at < now_ - make_interval(secs => p_redispatch_s));
            IF FOUND THEN
                INSERT INTO call_events (call_id, status, at, detail)
                VALUES (cid, 'canceled', now_, 'no_calling_window: the calling windows do not open within 15 days in '
                                               || array_to_string(v_zones, ', '));
            END IF;
            out := out || jsonb_build_object('id', cid, 'r', CASE WHEN FOUND THEN 'no_window' ELSE 'gone' END);
            CONTINUE;
        END IF;
        IF v_rules IS NOT NULL AND v_open > wnow THEN
            UPDATE calls SET due_at = now_ + (v_open - wnow), dispatched_at = NULL, window_zones = v_zones,
                             window_rules = v_rules, window_source = v_src, window_held_until = v_open
             WHERE id = cid AND project_id = p_project AND status = 'queued'
               AND (dispatched_at IS NULL OR dispatched_at < now_ - make_interval(secs => p_redispatch_s))
            RETURNING * INTO c;
            IF FOUND THEN
                out := out || jsonb_build_object('id', cid, 'r', 'later',
                                                 'due_ms', floor(extract(epoch FROM c.due_at) * 1000)::bigint);
            ELSE
                out := out || jsonb_build_object('id', cid, 'r', 'gone');
            END IF;
            CONTINUE;
        END IF;
        UPDATE calls SET dispatched_at = now_, window_zones = v_zones, window_rules = v_rules, window_source = v_src
         WHERE id = cid AND project_id = p_project AND status = 'queued'
           AND (dispatched_at IS NULL OR dispatched_at < now_ - make_interval(secs => p_redispatch_s))
        RETURNING * INTO c;
        IF NOT FOUND THEN
            out := out || jsonb_build_object('id', cid, 'r', 'gone');
            CONTINUE;
        END IF;
        IF EXISTS (SELECT 1 FROM dnc d WHERE d.project_id = p_project AND d.phone = c.phone) THEN
            UPDATE calls SET status = 'canceled', final_state = 'dnc_blocked', ended_at = now_ WHERE id = cid;
            INSERT INTO call_events (call_id, status, at, detail)
            VALUES (cid, 'canceled', now_, 'dnc_blocked: the number is on the do-not-call list');
            out := out || jsonb_build_object('id', cid, 'r', 'dnc_blocked');
            CONTINUE;
        END IF;
        tat := greatest(tat, now_) + t;
        v_ok := true;
        IF v_bid IS NOT NULL THEN
            UPDATE batches SET pace_tat = greatest(coalesce(pace_tat, now_), now_)
                                          + make_interval(secs => 60.0 / pacing_per_min),
                               started_at = coalesce(started_at, now_),
                               status = CASE WHEN status = 'scheduled' THEN 'running' ELSE status END
             WHERE id = v_bid;
        END IF;
        out := out || jsonb_build_object('id', cid, 'r', 'ok', 'msg', json_build_object(
            'v', 1, 'type', 'call.dispatch', 'call_id', c.id, 'project_id', c.project_id, 'phone', c.phone,
            'scenario', c.scenario, 'metadata', c.metadata, 'caller_id', c.caller_id, 'batch_id', c.batch_id,
            'dispatched_at', od_ts(now_))::text);
    END LOOP;
    UPDATE project_pacing SET pace_tat = tat WHERE project_id = p_project;
    RETURN jsonb_build_object('r', 'ok',
                              'next_ms', floor(extract(epoch FROM CASE WHEN v_ok OR v_wake IS NULL
                                                                       THEN greatest(tat, now_)
                                                                       ELSE greatest(v_wake, now_) END) * 1000)::bigint,
                              'calls', out);
END
$$;

