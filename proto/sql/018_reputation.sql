-- Caller reputation (issue 7; docs/reputation.md): the spam signals of each
-- caller ID and project, over the last hour, day and week, and an automatic
-- slow-down of a caller ID whose signals cross the operator's threshold.
--
-- The signals, per answered (completed) call: a short hang-up (the callee
-- hung up within OUTDIAL_REPUTATION_SHORT_CALL_S of the answer; the outcome
-- service decides it in C and says so in the event it hands to
-- od_apply_events, "short_hangup") and the outcome spam.
--
-- Counting without a hot row, as the batch counters do (004): od_reputation,
-- a rule of od_call_ended, appends one row per answered call to
-- reputation_deltas in the transaction of its final state; the outcome
-- service folds the deltas into 5-minute buckets (reputation_buckets) every
-- reaper interval (od_reputation_compact, SKIP LOCKED: every copy may run
-- it) and drops buckets older than a week. A read is buckets + pending
-- deltas. 1 h is the last 12 buckets (the current one included), 24 h the
-- last 288, 7 d the last 2016.
--
-- The slow-down: every OUTDIAL_REPUTATION_INTERVAL_MS each outcome copy runs
-- od_reputation_check; the copy that gets the advisory lock decides. A
-- caller ID whose last hour has at least min_answered answered calls and
-- (short hang-ups + spam) / answered >= threshold gets its pace_factor
-- halved (down to 1/16), at most once per cooldown, with the audit entry and
-- the webhook event caller_id.reputation_warning. Once the last hour's rate
-- is under half the threshold (or nothing was answered in it) and the
-- cooldown has passed, pace_factor is multiplied by 1.5 up to 1; back at 1,
-- the audit entry caller_id.reputation_recovered. od_dispatch paces a call
-- whose caller ID has pace_factor < 1 at most at the project's rate x
-- pace_factor (caller_ids.pace_tat, a GCRA like the batch's).
--
-- Restated here: od_call_ended (017's, with od_reputation last),
-- od_project_json (016's, with "reputation"), od_dispatch (013's, with the
-- caller ID's GCRA).


ALTER TABLE caller_ids
    ADD COLUMN pace_factor double precision NOT NULL DEFAULT 1 CHECK (pace_factor > 0 AND pace_factor <= 1),
    ADD COLUMN pace_tat timestamptz,                 -- the caller ID's GCRA while pace_factor < 1
    ADD COLUMN reputation_changed_at timestamptz;    -- the last change of pace_factor (the cooldown)

-- caller_id '' = a call without a caller ID (it counts for the project only).
CREATE TABLE reputation_buckets (
    project_id uuid NOT NULL,
    caller_id  text NOT NULL,
    bucket     timestamptz NOT NULL,              -- the start of a 5-minute bucket (od_reputation_bucket)
    answered   bigint NOT NULL,
    short      bigint NOT NULL,                   -- short hang-ups by the callee
    spam       bigint NOT NULL,                   -- outcome spam
    PRIMARY KEY (project_id, caller_id, bucket)
);
CREATE INDEX reputation_buckets_bucket ON reputation_buckets (bucket);
CREATE TABLE reputation_deltas (
    id         bigserial PRIMARY KEY,
    project_id uuid NOT NULL,
    caller_id  text NOT NULL,
    bucket     timestamptz NOT NULL,
    answered   integer NOT NULL,
    short      integer NOT NULL,
    spam       integer NOT NULL
);

CREATE OR REPLACE FUNCTION od_reputation_bucket(p_at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT date_bin('5 minutes', p_at, timestamptz '2000-01-01 00:00:00+00')
$$;

-- The rule for od_call_ended: an answered call records who hung up and
-- appends its signals.
CREATE OR REPLACE FUNCTION od_reputation(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    IF c.final_state IS DISTINCT FROM 'completed' THEN
        RETURN '';
    END IF;
    -- who hung up counts here only: a second UPDATE of the call's row (a new row version and its triggers)
    -- doubled od_apply_events' time per completed call (bench/outcome-rules); the final event's detail says it
    INSERT INTO reputation_deltas (project_id, caller_id, bucket, answered, short, spam)
    VALUES (c.project_id, coalesce(c.caller_id, ''), od_reputation_bucket(coalesce(c.ended_at, now())), 1,
            CASE WHEN (e->>'short_hangup')::boolean THEN 1 ELSE 0 END,
            CASE WHEN c.outcome = 'spam' THEN 1 ELSE 0 END);
    RETURN CASE WHEN (e->>'short_hangup')::boolean THEN '; short hang-up by the callee' ELSE '' END;
END
$$;

CREATE OR REPLACE FUNCTION od_call_ended(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN od_opt_out(c, e) || od_retry(c, e) || od_internal_error(c, e) || od_recording(c, e) || od_spend_cap(c, e)
           || od_reputation(c, e);
END
$$;

-- The outcome service, every reaper interval: folds up to p_limit deltas
-- into the buckets and drops up to p_limit buckets older than a week.
-- Returns the number of deltas folded.
CREATE OR REPLACE FUNCTION od_reputation_compact(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_n integer;
BEGIN
    WITH d AS (
        DELETE FROM reputation_deltas WHERE id IN (
            SELECT id FROM reputation_deltas ORDER BY id LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING project_id, caller_id, bucket, answered, short, spam
    ), s AS (
        SELECT project_id, caller_id, bucket, sum(answered) AS answered, sum(short) AS short, sum(spam) AS spam,
               count(*) AS cnt
          FROM d GROUP BY project_id, caller_id, bucket
    ), u AS (
        INSERT INTO reputation_buckets AS r (project_id, caller_id, bucket, answered, short, spam)
        SELECT project_id, caller_id, bucket, answered, short, spam FROM s ORDER BY project_id, caller_id, bucket
        ON CONFLICT (project_id, caller_id, bucket) DO UPDATE
           SET answered = r.answered + excluded.answered, short = r.short + excluded.short,
               spam = r.spam + excluded.spam
        RETURNING 1
    )
    SELECT coalesce(sum(cnt), 0) INTO v_n FROM s;
    DELETE FROM reputation_buckets WHERE ctid IN (
        SELECT ctid FROM reputation_buckets
         WHERE bucket < od_reputation_bucket(now()) - interval '7 days' LIMIT p_limit);
    RETURN v_n;
END
$$;

-- The counts per project and caller ID over each window (1h, 24h, 7d), from
-- the buckets and the pending deltas: only the pairs with answered calls in
-- the window. p_project NULL: every project.
CREATE OR REPLACE FUNCTION od_reputation_counts(p_project uuid)
RETURNS TABLE (project_id uuid, caller_id text, w text, answered bigint, short bigint, spam bigint)
LANGUAGE sql STABLE AS $$
    WITH x AS (
        SELECT r.project_id, r.caller_id, r.bucket, r.answered, r.short, r.spam FROM reputation_buckets r
         WHERE (p_project IS NULL OR r.project_id = p_project)
           AND r.bucket > od_reputation_bucket(now()) - interval '7 days'
        UNION ALL
        SELECT d.project_id, d.caller_id, d.bucket, d.answered, d.short, d.spam FROM reputation_deltas d
         WHERE (p_project IS NULL OR d.project_id = p_project)
           AND d.bucket > od_reputation_bucket(now()) - interval '7 days'
    )
    SELECT x.project_id, x.caller_id, w.name, sum(x.answered)::bigint, sum(x.short)::bigint, sum(x.spam)::bigint
      FROM x JOIN (VALUES ('1h', interval '1 hour'), ('24h', interval '24 hours'), ('7d', interval '7 days')) w(name, span)
        ON x.bucket > od_reputation_bucket(now()) - w.span
     GROUP BY x.project_id, x.caller_id, w.name
$$;

-- One window as the API shows it; rates are null without answered calls.
CREATE OR REPLACE FUNCTION od_reputation_window_json(p_answered bigint, p_short bigint, p_spam bigint) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object('answered', coalesce(p_answered, 0), 'short_hangups', coalesce(p_short, 0),
                             'spam', coalesce(p_spam, 0),
                             'short_hangup_rate', CASE WHEN p_answered > 0 THEN round(p_short::numeric / p_answered, 4) END,
                             'spam_rate', CASE WHEN p_answered > 0 THEN round(p_spam::numeric / p_answered, 4) END)
$$;

-- GET /v1/project's "reputation": the project's windows and each verified
-- caller ID's (zeros for a window without answered calls).
CREATE OR REPLACE FUNCTION od_reputation_json(p_project uuid) RETURNS json
LANGUAGE sql STABLE AS $$
    WITH n AS (SELECT * FROM od_reputation_counts(p_project)),
    a AS (  -- per caller ID, and '*': the whole project
        SELECT n.caller_id, n.w, n.answered, n.short, n.spam FROM n
        UNION ALL
        SELECT '*', n.w, sum(n.answered)::bigint, sum(n.short)::bigint, sum(n.spam)::bigint FROM n GROUP BY n.w
    ),
    keys AS (SELECT '*'::text AS phone UNION ALL SELECT ci.phone FROM caller_ids ci WHERE ci.project_id = p_project),
    win AS (  -- each key's three windows as one object
        SELECT k.phone, json_object_agg(w.name, od_reputation_window_json(a.answered, a.short, a.spam) ORDER BY w.i) AS o
          FROM keys k CROSS JOIN unnest(ARRAY['1h', '24h', '7d']) WITH ORDINALITY w(name, i)
          LEFT JOIN a ON a.caller_id = k.phone AND a.w = w.name
         GROUP BY k.phone
    )
    SELECT json_build_object(
        'project', (SELECT win.o FROM win WHERE win.phone = '*'),
        'caller_ids', (SELECT coalesce(json_agg(json_build_object('phone', ci.phone, 'pace_factor', ci.pace_factor,
                                                                  '1h', win.o->'1h', '24h', win.o->'24h',
                                                                  '7d', win.o->'7d')
                                                ORDER BY ci.verified_at, ci.phone), '[]')
                         FROM caller_ids ci JOIN win ON win.phone = ci.phone
                        WHERE ci.project_id = p_project))
$$;

-- The project object of GET /v1/project (016's), with the caller reputation.
CREATE OR REPLACE FUNCTION od_project_json(p projects) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', p.id, 'name', p.name, 'pacing_per_min', p.pacing_per_min,
               'limits', json_build_object('calls_per_min', p.calls_per_min,
                                           'requests_per_hour', p.requests_per_hour),
               'wallet', json_build_object('balance_micros', p.wallet_micros, 'currency', p.currency),
               'price_per_min_micros', p.price_per_min_micros,
               'calling_windows', p.calling_windows,
               'retry', od_retry_json(p.retry_on, p.retry_max_attempts, p.retry_delay_s),
               'recording_retention_days', p.recording_retention_days,
               'caller_ids', (SELECT coalesce(json_agg(ci.phone ORDER BY ci.verified_at, ci.phone), '[]')
                                FROM caller_ids ci WHERE ci.project_id = p.id),
               'reputation', od_reputation_json(p.id),
               'created_at', od_ts(p.created_at))
$$;

-- A caller ID's rates as the warning and recovery entries record them.
CREATE OR REPLACE FUNCTION od_reputation_changes(p_from double precision, p_to double precision, p_answered bigint,
                                                 p_short bigint, p_spam bigint, p_threshold double precision)
RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('pace_factor', jsonb_build_object('from', p_from, 'to', p_to), 'window', '1h',
                              'threshold', p_threshold)
           || od_reputation_window_json(p_answered, p_short, p_spam)::jsonb
           || jsonb_build_object('rate', CASE WHEN p_answered > 0
                                              THEN round((p_short + p_spam)::numeric / p_answered, 4) END)
$$;

-- Every OUTDIAL_REPUTATION_INTERVAL_MS, from each outcome copy. The copy
-- that gets the advisory lock applies the slow-downs and recoveries (the
-- lock ends with the transaction); every copy gets the series for its
-- /metrics. Returns {"decided": bool, "changes": [{project_id, caller_id,
-- action, pace_factor: {from, to}, answered, short_hangups, spam, rate, ...}],
-- "series": [{p, c (null: the project), pf (null: the project), r: {"1h":
-- [short_hangup_rate, spam_rate], "24h": ..., "7d": ...}}]} (a window
-- without answered calls is absent from r),
-- with the series ordered by project id and caller ID (bytewise), the
-- project's own first: caller IDs with answered calls in the last 7 days or
-- slowed down, and projects with answered calls in the last 7 days.
CREATE OR REPLACE FUNCTION od_reputation_check(p_threshold double precision, p_min_answered integer,
                                               p_cooldown_s integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_decided boolean := pg_try_advisory_xact_lock(hashtext('outdial.od_reputation_check'));
    v_changes jsonb := '[]';
    r         record;
    v_to      double precision;
    v_action  text;
    v_rate    double precision;
    v_chg     jsonb;
BEGIN
    IF v_decided THEN
        FOR r IN
            SELECT ci.project_id, ci.phone, ci.pace_factor, ci.reputation_changed_at,
                   coalesce(n.answered, 0) AS answered, coalesce(n.short, 0) AS short, coalesce(n.spam, 0) AS spam
              FROM (SELECT k.project_id, k.caller_id, k.answered, k.short, k.spam
                      FROM od_reputation_counts(NULL) k WHERE k.w = '1h' AND k.caller_id <> '') n
              FULL JOIN (SELECT * FROM caller_ids x WHERE x.pace_factor < 1) s
                ON s.project_id = n.project_id AND s.phone = n.caller_id
              JOIN caller_ids ci ON ci.project_id = coalesce(s.project_id, n.project_id)
                                AND ci.phone = coalesce(s.phone, n.caller_id)
             WHERE ci.reputation_changed_at IS NULL
                OR ci.reputation_changed_at <= now() - make_interval(secs => p_cooldown_s)
             ORDER BY ci.project_id, ci.phone
        LOOP
            v_rate := CASE WHEN r.answered > 0 THEN (r.short + r.spam)::double precision / r.answered END;
            IF r.answered >= p_min_answered AND v_rate >= p_threshold AND r.pace_factor > 1.0 / 16 THEN
                v_to := greatest(r.pace_factor / 2, 1.0 / 16);
                v_action := 'caller_id.reputation_warning';
            ELSIF r.pace_factor < 1 AND (r.answered = 0 OR v_rate < p_threshold / 2) THEN
                v_to := least(r.pace_factor * 1.5, 1);
                v_action := CASE WHEN v_to >= 1 THEN 'caller_id.reputation_recovered' END;
            ELSE
                CONTINUE;
            END IF;
            -- no actor while the row changes: the audit entry is the one below, not caller_id.updated
            UPDATE caller_ids SET pace_factor = v_to, reputation_changed_at = now(),
                                  pace_tat = CASE WHEN v_to >= 1 THEN NULL ELSE pace_tat END
             WHERE project_id = r.project_id AND phone = r.phone;
            v_chg := od_reputation_changes(r.pace_factor, v_to, r.answered, r.short, r.spam, p_threshold);
            IF v_action IS NOT NULL THEN
                PERFORM set_config('outdial.actor', '{"type": "system", "service": "outcome"}', true);
                PERFORM od_audit(r.project_id, v_action, 'caller_id', r.phone, v_chg);
                PERFORM set_config('outdial.actor', '', true);
            END IF;
            IF v_action = 'caller_id.reputation_warning' THEN
                INSERT INTO domain_events (project_id, type, object_id, data)
                VALUES (r.project_id, v_action, r.project_id,
                        jsonb_build_object('project_id', r.project_id, 'caller_id', r.phone) || v_chg);
            END IF;
            v_changes := v_changes || (jsonb_build_object('project_id', r.project_id, 'caller_id', r.phone,
                                                          'action', coalesce(v_action, 'caller_id.reputation_improved'))
                                       || v_chg);
        END LOOP;
    END IF;
    RETURN jsonb_build_object('decided', v_decided, 'changes', v_changes, 'series', (
        WITH n AS (SELECT * FROM od_reputation_counts(NULL)),
        agg AS (  -- per caller ID, and per project (caller_id NULL)
            SELECT n.project_id, n.caller_id, n.w, n.answered, n.short, n.spam FROM n WHERE n.caller_id <> ''
            UNION ALL
            SELECT n.project_id, NULL, n.w, sum(n.answered), sum(n.short), sum(n.spam) FROM n
             GROUP BY n.project_id, n.w
        ),
        keys AS (
            SELECT a.project_id, a.caller_id,
                   jsonb_object_agg(a.w, jsonb_build_array(a.short::double precision / a.answered,
                                                           a.spam::double precision / a.answered)) AS r
              FROM agg a WHERE a.answered > 0 GROUP BY a.project_id, a.caller_id
        )
        SELECT coalesce(jsonb_agg(jsonb_build_object('p', coalesce(k.project_id, x.project_id),
                                                     'c', coalesce(k.caller_id, x.phone),
                                                     'pf', coalesce(ci.pace_factor, x.pace_factor),
                                                     'r', coalesce(k.r, '{}'))
                                  ORDER BY coalesce(k.project_id, x.project_id)::text COLLATE "C",
                                           coalesce(k.caller_id, x.phone, '') COLLATE "C"), '[]')
          FROM keys k
          FULL JOIN (SELECT * FROM caller_ids y WHERE y.pace_factor < 1) x
            ON x.project_id = k.project_id AND x.phone = k.caller_id
          LEFT JOIN caller_ids ci ON ci.project_id = k.project_id AND ci.phone = k.caller_id));
END
$$;

-- od_dispatch (013's), restated with one addition: a call whose caller ID
-- has pace_factor < 1 (the reputation slow-down) also passes that caller
-- ID's GCRA (caller_ids.pace_tat, no burst) at the project's rate x
-- pace_factor, or answers "wait" with the wake time at its TAT. Caller IDs
-- at pace_factor 1 are neither locked nor written.
CREATE OR REPLACE FUNCTION od_dispatch(p_project uuid, p_ids uuid[], p_redispatch_s integer, p_zones text[],
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
    ci      caller_ids;
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
    -- the slowed-down caller IDs' pacing state, locked like the batches' (reputation: pace_factor < 1)
    PERFORM 1 FROM caller_ids
     WHERE project_id = p_project AND pace_factor < 1
       AND phone IN (SELECT x.caller_id FROM calls x WHERE x.id = ANY (p_ids))
     ORDER BY phone FOR UPDATE;
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
        -- a slowed-down caller ID: at most the project's rate x its pace_factor
        SELECT y.* INTO ci FROM calls x JOIN caller_ids y ON y.project_id = x.project_id AND y.phone = x.caller_id
         WHERE x.id = cid AND y.pace_factor < 1;
        IF ci.phone IS NOT NULL AND now_ < ci.pace_tat THEN
            out := out || jsonb_build_object('id', cid, 'r', 'wait');
            v_wake := least(v_wake, greatest(tat, ci.pace_tat));
            CONTINUE;
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
        IF ci.phone IS NOT NULL THEN
            UPDATE caller_ids SET pace_tat = greatest(coalesce(pace_tat, now_), now_)
                                             + make_interval(secs => 60.0 / (proj.pacing_per_min * ci.pace_factor))
             WHERE project_id = ci.project_id AND phone = ci.phone;
        END IF;
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

