-- The statements of the services, as functions: each request is one round
-- trip and one transaction. Re-applied safely (CREATE OR REPLACE).

CREATE OR REPLACE FUNCTION od_ts(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- The call object of the API. A single SELECT, so PostgreSQL inlines it
-- (ten times faster than a function it has to call: this is on the accept path).
CREATE OR REPLACE FUNCTION od_call_json(c calls) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', c.id, 'status', c.status, 'final_state', c.final_state, 'outcome', c.outcome,
        'goal_completed', c.goal_completed, 'scenario', c.scenario, 'phone', c.phone,
        'metadata', c.metadata, 'scheduled_for', od_ts(c.scheduled_for), 'caller_id', c.caller_id,
        'batch_id', c.batch_id, 'created_at', od_ts(c.created_at), 'dialed_at', od_ts(c.dialed_at),
        'connected_at', od_ts(c.connected_at), 'ended_at', od_ts(c.ended_at),
        'duration_s', round(c.duration_ms / 1000.0, 3), 'billed_s', c.billed_s,
        'cost_micros', c.cost_micros)
$$;

-- The call object with its events (GET /v1/calls/{id}): the list is spliced
-- into the object's text to keep the key order. The first event, queued, is
-- the call's creation (calls.created_at), not a row of call_events: the
-- accept path writes one row per call less.
CREATE OR REPLACE FUNCTION od_call_json_events(c calls) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT (left(od_call_json(c)::text, -1) || ', "events" : ' || (
            SELECT json_agg(ev ORDER BY ord, id)::text FROM (
                SELECT 0 AS ord, 0::bigint AS id,
                       json_build_object('status', 'queued', 'at', od_ts(c.created_at), 'detail', NULL) AS ev
                UNION ALL
                SELECT 1, e.id, json_build_object('status', e.status, 'at', od_ts(e.at), 'detail', e.detail)
                  FROM call_events e WHERE e.call_id = c.id) x) || '}')::json
$$;

-- GCRA (see libs/core/include/od/gcra.h), one step, pure: `limit` requests
-- per `period_s` with the whole limit as burst. `tat` is the new state when
-- allowed, else the old one.
CREATE OR REPLACE FUNCTION od_gcra_step(p_tat timestamptz, p_now timestamptz, p_limit integer,
                                        p_period_s double precision,
                                        OUT allowed boolean, OUT tat timestamptz, OUT retry_after_ms bigint,
                                        OUT remaining integer, OUT reset_s integer)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    t   interval := greatest(make_interval(secs => p_period_s / p_limit), interval '1 microsecond');
    tau interval := make_interval(secs => p_period_s / p_limit * (p_limit - 1));
    cur timestamptz := greatest(coalesce(p_tat, p_now), p_now);
BEGIN
    IF p_now < cur - tau THEN
        allowed := false;
        tat := p_tat;
        retry_after_ms := ceil(extract(epoch FROM (cur - tau - p_now)) * 1000);
        remaining := 0;
        reset_s := ceil(extract(epoch FROM (cur - p_now)));
        RETURN;
    END IF;
    allowed := true;
    tat := cur + t;
    retry_after_ms := 0;
    remaining := greatest(0, floor(extract(epoch FROM (p_now + tau - tat)) / extract(epoch FROM t))::integer + 1);
    reset_s := ceil(extract(epoch FROM (tat - p_now)));
END
$$;

-- One request of an API key against its budgets: the hourly one over all
-- requests and, for POST /v1/calls (p_calls_per_min not NULL), the
-- per-minute one. Pure: takes the buckets' states, returns the new ones
-- (unchanged when refused) and the answer for the RateLimit headers
-- {"ok","retry_after_ms","policy","limit","window","remaining","reset"}
-- (policy: the tighter budget, or the one that refused).
CREATE OR REPLACE FUNCTION od_rate_decide(p_h_tat timestamptz, p_c_tat timestamptz, p_now timestamptz,
                                          p_calls_per_min integer, p_req_per_hour integer,
                                          OUT rl jsonb, OUT h_tat timestamptz, OUT c_tat timestamptz)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    h record;
    c record;
BEGIN
    h_tat := p_h_tat;
    c_tat := p_c_tat;
    h := od_gcra_step(p_h_tat, p_now, p_req_per_hour, 3600);
    IF p_calls_per_min IS NOT NULL THEN
        c := od_gcra_step(p_c_tat, p_now, p_calls_per_min, 60);
        IF NOT c.allowed THEN
            rl := jsonb_build_object('ok', false, 'retry_after_ms', c.retry_after_ms, 'policy', 'calls',
                                     'limit', p_calls_per_min, 'window', 60, 'remaining', 0, 'reset', c.reset_s);
            RETURN;
        END IF;
    END IF;
    IF NOT h.allowed THEN
        rl := jsonb_build_object('ok', false, 'retry_after_ms', h.retry_after_ms, 'policy', 'requests',
                                 'limit', p_req_per_hour, 'window', 3600, 'remaining', 0, 'reset', h.reset_s);
        RETURN;
    END IF;
    h_tat := h.tat;
    IF p_calls_per_min IS NOT NULL THEN
        c_tat := c.tat;
        IF c.remaining <= h.remaining THEN
            rl := jsonb_build_object('ok', true, 'policy', 'calls', 'limit', p_calls_per_min, 'window', 60,
                                     'remaining', c.remaining, 'reset', c.reset_s);
            RETURN;
        END IF;
    END IF;
    rl := jsonb_build_object('ok', true, 'policy', 'requests', 'limit', p_req_per_hour, 'window', 3600,
                             'remaining', h.remaining, 'reset', h.reset_s);
END
$$;

-- The two buckets of a key, locked until the end of the transaction (every
-- ingress copy shares them).
CREATE OR REPLACE FUNCTION od_rate_lock(p_key_id uuid, OUT h_tat timestamptz, OUT c_tat timestamptz)
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.tat INTO h_tat FROM rate_limits r WHERE r.bucket = 'h:' || p_key_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO rate_limits (bucket, tat) VALUES ('h:' || p_key_id, '-infinity'), ('c:' || p_key_id, '-infinity')
        ON CONFLICT DO NOTHING;
        SELECT r.tat INTO h_tat FROM rate_limits r WHERE r.bucket = 'h:' || p_key_id FOR UPDATE;
    END IF;
    SELECT r.tat INTO c_tat FROM rate_limits r WHERE r.bucket = 'c:' || p_key_id FOR UPDATE;
END
$$;

CREATE OR REPLACE FUNCTION od_rate_store(p_key_id uuid, p_h_tat timestamptz, p_c_tat timestamptz) RETURNS void
LANGUAGE sql AS $$
    UPDATE rate_limits SET tat = CASE bucket WHEN 'h:' || p_key_id THEN p_h_tat ELSE p_c_tat END
     WHERE bucket IN ('h:' || p_key_id, 'c:' || p_key_id)
$$;

-- Rate-limit one request (every endpoint but POST /v1/calls, which decides
-- a whole group of requests in od_accept_calls).
CREATE OR REPLACE FUNCTION od_rate_take(p_key_id uuid, p_calls_per_min integer, p_req_per_hour integer,
                                        p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    cur record;
    d   record;
BEGIN
    cur := od_rate_lock(p_key_id);
    d := od_rate_decide(cur.h_tat, cur.c_tat, p_now, p_calls_per_min, p_req_per_hour);
    IF (d.rl->>'ok')::boolean THEN
        PERFORM od_rate_store(p_key_id, d.h_tat, d.c_tat);
    END IF;
    RETURN d.rl;
END
$$;

-- Authentication: the key (by hash) with its project's limits. Marks the
-- key used at most once a minute.
CREATE OR REPLACE FUNCTION od_auth(p_hash text) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    SELECT a.id, a.project_id, a.scopes, a.revoked_at, a.last_used_at, p.calls_per_min, p.requests_per_hour
      INTO k FROM api_keys a JOIN projects p ON p.id = a.project_id WHERE a.key_hash = p_hash;
    IF NOT FOUND OR k.revoked_at IS NOT NULL THEN
        RETURN NULL;
    END IF;
    IF k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute' THEN
        UPDATE api_keys SET last_used_at = now() WHERE id = k.id;
    END IF;
    RETURN json_build_object('key_id', k.id, 'project_id', k.project_id, 'scopes', k.scopes,
                             'calls_per_min', k.calls_per_min, 'requests_per_hour', k.requests_per_hour);
END
$$;

-- A request whose Idempotency-Key is already stored: a different body is a
-- reuse (422); the first request still in flight is a conflict (409); else
-- the stored answer is replayed. An in-flight record older than 30 s belongs
-- to an ingress that died after storing the call: its answer is final.
CREATE OR REPLACE FUNCTION od_idem_decide(idem idempotency_keys, p_hash text, p_now timestamptz) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN idem.request_hash <> p_hash THEN jsonb_build_object('r', 'reused')
        WHEN idem.state = 'in_flight' AND idem.created_at > p_now - interval '30 seconds'
            THEN jsonb_build_object('r', 'in_use')
        ELSE jsonb_build_object('r', 'replay', 'status', idem.status_code, 'body', idem.response)
    END
$$;

-- The accept path of POST /v1/calls for a group of requests that arrived
-- together: one transaction, one round trip. Each element of p_reqs:
--   {key_id, project_id, calls_per_min, requests_per_hour, idem_key, request_hash,
--    call_id, scenario, phone, metadata, scheduled_for, caller_id}
-- Each result: {"r": accepted|replay|in_use|reused|rate_limited|unknown_scenario|
--   caller_id_not_verified|phone_on_dnc_list|insufficient_funds, "status", "body", "rl"}.
-- Order per request: idempotency first (replays are never rate limited), then
-- the rate limits, then the project's rules. Only accepted requests are
-- remembered under their Idempotency-Key: a rejected request may be retried.
CREATE OR REPLACE FUNCTION od_accept_calls(p_reqs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    q       jsonb;
    res     jsonb[] := array_fill(NULL::jsonb, ARRAY[jsonb_array_length(p_reqs)]);
    i       bigint;
    idem    idempotency_keys;
    rl      jsonb;
    chk     record;
    c       calls;
    now_    timestamptz := now();
    body    text;
    rl_key  uuid;
    h_tat   timestamptz;
    c_tat   timestamptz;
BEGIN
    -- requests are decided grouped by API key (ascending): a key's rate-limit rows
    -- are locked once, and in the same order by every transaction (no deadlock);
    -- the answers come back in the order of the requests
    FOR q, i IN SELECT x.value, x.ordinality FROM jsonb_array_elements(p_reqs) WITH ORDINALITY x
                 ORDER BY x.value->>'key_id', x.ordinality LOOP
        IF q->>'idem_key' IS NOT NULL THEN
            SELECT * INTO idem FROM idempotency_keys
             WHERE project_id = (q->>'project_id')::uuid AND key = q->>'idem_key';
            IF FOUND THEN
                res[i] := od_idem_decide(idem, q->>'request_hash', now_);
                CONTINUE;
            END IF;
        END IF;

        -- the key's buckets stay in variables while consecutive requests share the key
        -- (the usual group); they are written back when the key changes and at the end
        IF rl_key IS DISTINCT FROM (q->>'key_id')::uuid THEN
            IF rl_key IS NOT NULL THEN
                PERFORM od_rate_store(rl_key, h_tat, c_tat);
            END IF;
            rl_key := (q->>'key_id')::uuid;
            SELECT * INTO h_tat, c_tat FROM od_rate_lock(rl_key);
        END IF;
        SELECT * INTO rl, h_tat, c_tat
          FROM od_rate_decide(h_tat, c_tat, now_, (q->>'calls_per_min')::integer,
                              (q->>'requests_per_hour')::integer);
        IF NOT (rl->>'ok')::boolean THEN
            res[i] := jsonb_build_object('r', 'rate_limited', 'rl', rl);
            CONTINUE;
        END IF;

        -- the project's rules in one look-up
        SELECT p.wallet_micros,
               EXISTS (SELECT 1 FROM scenarios s WHERE s.project_id = p.id AND s.idn = q->>'scenario') AS scenario_ok,
               CASE WHEN q->>'caller_id' IS NULL
                    THEN (SELECT ci.phone FROM caller_ids ci WHERE ci.project_id = p.id
                           ORDER BY ci.verified_at, ci.phone LIMIT 1)
                    ELSE (SELECT ci.phone FROM caller_ids ci WHERE ci.project_id = p.id AND ci.phone = q->>'caller_id')
               END AS caller,
               EXISTS (SELECT 1 FROM dnc d WHERE d.project_id = p.id AND d.phone = q->>'phone') AS on_dnc
          INTO chk FROM projects p WHERE p.id = (q->>'project_id')::uuid;
        IF NOT chk.scenario_ok THEN
            res[i] := jsonb_build_object('r', 'unknown_scenario', 'rl', rl);
            CONTINUE;
        END IF;
        IF q->>'caller_id' IS NOT NULL AND chk.caller IS NULL THEN
            res[i] := jsonb_build_object('r', 'caller_id_not_verified', 'rl', rl);
            CONTINUE;
        END IF;
        IF chk.on_dnc THEN
            res[i] := jsonb_build_object('r', 'phone_on_dnc_list', 'rl', rl);
            CONTINUE;
        END IF;
        IF chk.wallet_micros <= 0 THEN
            res[i] := jsonb_build_object('r', 'insufficient_funds', 'rl', rl);
            CONTINUE;
        END IF;

        INSERT INTO calls (id, project_id, api_key_id, scenario, phone, metadata, caller_id, scheduled_for, due_at,
                           created_at)
        VALUES ((q->>'call_id')::uuid, (q->>'project_id')::uuid, (q->>'key_id')::uuid, q->>'scenario', q->>'phone',
                coalesce(q->'metadata', '{}'::jsonb), chk.caller, (q->>'scheduled_for')::timestamptz,
                greatest(coalesce((q->>'scheduled_for')::timestamptz, now_), now_), now_)
        RETURNING * INTO c;
        body := od_call_json(c)::text;
        -- a later request with the same key in this group finds this row (409); a concurrent
        -- transaction that stored the key first wins, and this call is taken back
        IF q->>'idem_key' IS NOT NULL THEN
            INSERT INTO idempotency_keys (project_id, key, request_hash, state, status_code, response, call_id)
            VALUES (c.project_id, q->>'idem_key', q->>'request_hash', 'in_flight', 202, body, c.id)
            ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                DELETE FROM calls WHERE id = c.id;
                SELECT * INTO idem FROM idempotency_keys
                 WHERE project_id = c.project_id AND key = q->>'idem_key';
                res[i] := od_idem_decide(idem, q->>'request_hash', now_);
                CONTINUE;
            END IF;
        END IF;
        res[i] := jsonb_build_object('r', 'accepted', 'status', 202, 'body', body, 'rl', rl,
                                         'due_ms', floor(extract(epoch FROM c.due_at) * 1000)::bigint);
    END LOOP;
    IF rl_key IS NOT NULL THEN
        PERFORM od_rate_store(rl_key, h_tat, c_tat);
    END IF;
    RETURN to_jsonb(res);
END
$$;

-- After Kafka's delivery reports: the calls are published and their
-- idempotency records complete.
CREATE OR REPLACE FUNCTION od_accept_done(p_ids uuid[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    UPDATE calls SET published_at = now() WHERE id = ANY (p_ids) AND published_at IS NULL;
    UPDATE idempotency_keys SET state = 'done' WHERE call_id = ANY (p_ids) AND state = 'in_flight';
END
$$;

-- Every other API request: rate limit, then the operation. Returns
-- {"status": http status, "body": the JSON answer as text (key order kept) or absent,
--  "code": problem code, "detail", "rl": ...}.
CREATE OR REPLACE FUNCTION od_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text, p_args jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl  jsonb;
    out jsonb;
    c   calls;
BEGIN
    IF p_op IN ('get_call', 'list_calls', 'get_project', 'list_scenarios', 'list_keys') THEN
        -- reads change only the rate-limit bucket: losing that on a crash is harmless
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    rl := od_rate_take(p_key_id, NULL, p_req_per_hour, now());
    IF NOT (rl->>'ok')::boolean THEN
        RETURN jsonb_build_object('status', 429, 'code', 'rate_limited', 'rl', rl);
    END IF;
    CASE p_op
    WHEN 'get_call' THEN
        SELECT * INTO c FROM calls WHERE id = (p_args->>'id')::uuid AND project_id = p_project;
        IF NOT FOUND THEN
            out := jsonb_build_object('status', 404, 'code', 'not_found');
        ELSE
            out := jsonb_build_object('status', 200, 'body', od_call_json_events(c)::text);
        END IF;
    WHEN 'list_calls' THEN
        out := jsonb_build_object('status', 200, 'body', od_list_calls(p_project, p_args)::text);
    WHEN 'cancel_call' THEN
        out := od_cancel_call(p_project, (p_args->>'id')::uuid);
    WHEN 'get_project' THEN
        out := jsonb_build_object('status', 200, 'body', (
            SELECT json_build_object('id', p.id, 'name', p.name, 'pacing_per_min', p.pacing_per_min,
                       'limits', json_build_object('calls_per_min', p.calls_per_min,
                                                   'requests_per_hour', p.requests_per_hour),
                       'wallet', json_build_object('balance_micros', p.wallet_micros, 'currency', p.currency),
                       'price_per_min_micros', p.price_per_min_micros,
                       'caller_ids', (SELECT coalesce(json_agg(ci.phone ORDER BY ci.verified_at, ci.phone), '[]')
                                        FROM caller_ids ci WHERE ci.project_id = p.id),
                       'created_at', od_ts(p.created_at))
              FROM projects p WHERE p.id = p_project)::text);
    WHEN 'list_scenarios' THEN
        out := jsonb_build_object('status', 200, 'body', json_build_object('data', (
            SELECT coalesce(json_agg(json_build_object('idn', s.idn, 'disclosure', s.disclosure,
                                                       'created_at', od_ts(s.created_at)) ORDER BY s.idn), '[]')
              FROM scenarios s WHERE s.project_id = p_project), 'next_cursor', NULL)::text);
    WHEN 'list_keys' THEN
        out := jsonb_build_object('status', 200, 'body', json_build_object('data', (
            SELECT coalesce(json_agg(json_build_object('id', k.id, 'name', k.name, 'scopes', k.scopes,
                       'prefix', k.key_prefix, 'created_at', od_ts(k.created_at),
                       'last_used_at', od_ts(k.last_used_at)) ORDER BY k.created_at), '[]')
              FROM api_keys k WHERE k.project_id = p_project AND k.revoked_at IS NULL), 'next_cursor', NULL)::text);
    WHEN 'create_key' THEN
        INSERT INTO api_keys (id, project_id, name, scopes, key_hash, key_prefix)
        VALUES ((p_args->>'id')::uuid, p_project, p_args->>'name',
                ARRAY(SELECT jsonb_array_elements_text(p_args->'scopes')), p_args->>'hash', p_args->>'prefix');
        out := jsonb_build_object('status', 201, 'body', (
            SELECT json_build_object('id', k.id, 'name', k.name, 'scopes', k.scopes, 'prefix', k.key_prefix,
                                     'created_at', od_ts(k.created_at))
              FROM api_keys k WHERE k.id = (p_args->>'id')::uuid)::text);
    WHEN 'revoke_key' THEN
        UPDATE api_keys SET revoked_at = now()
         WHERE id = (p_args->>'id')::uuid AND project_id = p_project AND revoked_at IS NULL;
        out := CASE WHEN FOUND THEN jsonb_build_object('status', 204)
                    ELSE jsonb_build_object('status', 404, 'code', 'not_found') END;
    ELSE
        RAISE EXCEPTION 'unknown operation %', p_op;
    END CASE;
    RETURN out || jsonb_build_object('rl', rl);
END
$$;

-- GET /v1/calls: newest first, cursor = the last id of the previous page
-- (ids are UUIDv7, so id order is creation order).
CREATE OR REPLACE FUNCTION od_list_calls(p_project uuid, a jsonb) RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lim  integer := coalesce((a->>'limit')::integer, 50);
    page calls[];
BEGIN
    SELECT coalesce(array_agg(x ORDER BY x.id DESC), '{}') INTO page FROM (
        SELECT * FROM calls c
         WHERE c.project_id = p_project
           AND (a->>'status' IS NULL OR c.status = a->>'status')
           AND (a->>'final_state' IS NULL OR c.final_state = a->>'final_state')
           AND (a->>'batch_id' IS NULL OR c.batch_id = (a->>'batch_id')::uuid)
           AND (a->>'phone' IS NULL OR c.phone = a->>'phone')
           AND (a->>'since' IS NULL OR c.created_at >= (a->>'since')::timestamptz)
           AND (a->>'cursor' IS NULL OR c.id < (a->>'cursor')::uuid)
         ORDER BY c.id DESC
         LIMIT lim + 1) x;
    RETURN json_build_object(
        'data', (SELECT coalesce(json_agg(od_call_json(c) ORDER BY c.id DESC), '[]')
                   FROM unnest(page[1:lim]) AS c),
        'next_cursor', CASE WHEN cardinality(page) > lim THEN page[lim].id END);
END
$$;

-- POST /v1/calls/{id}/cancel: only a call not yet claimed by a dialer.
CREATE OR REPLACE FUNCTION od_cancel_call(p_project uuid, p_id uuid) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    c calls;
BEGIN
    UPDATE calls SET status = 'canceled', final_state = 'canceled', ended_at = now()
     WHERE id = p_id AND project_id = p_project AND status = 'queued'
    RETURNING * INTO c;
    IF FOUND THEN
        INSERT INTO call_events (call_id, status, at, detail) VALUES (c.id, 'canceled', now(), 'canceled by request');
        RETURN jsonb_build_object('status', 200, 'body', od_call_json_events(c)::text);
    END IF;
    SELECT * INTO c FROM calls WHERE id = p_id AND project_id = p_project;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 404, 'code', 'not_found');
    END IF;
    RETURN jsonb_build_object('status', 409, 'code', 'call_not_cancelable',
                              'detail', 'the call is ' || c.status || '; only queued calls can be canceled');
END
$$;

-- Scheduler: queued calls of the given projects due within the horizon that
-- were never dispatched (or whose dispatch is older than p_redispatch_s and
-- was never claimed: the dispatch message was lost). `unpublished` marks a call
-- stored more than 5 s ago whose Kafka publish ingress never saw confirmed.
CREATE OR REPLACE FUNCTION od_sched_sweep(p_projects uuid[], p_horizon_s integer, p_redispatch_s integer,
                                          p_limit integer)
RETURNS TABLE (id uuid, project_id uuid, batch_id uuid, due_ms bigint, unpublished boolean)
LANGUAGE sql STABLE AS $$
    SELECT c.id, c.project_id, c.batch_id, floor(extract(epoch FROM c.due_at) * 1000)::bigint,
           c.published_at IS NULL AND c.created_at < now() - interval '5 seconds'
      FROM calls c
     WHERE c.project_id = ANY (p_projects) AND c.status = 'queued'
       AND c.due_at <= now() + make_interval(secs => p_horizon_s)
       AND (c.dispatched_at IS NULL OR c.dispatched_at < now() - make_interval(secs => p_redispatch_s))
     ORDER BY c.due_at
     LIMIT p_limit
$$;

-- Scheduler: dispatch some due calls of one project, in the given order, as
-- far as the project's pacing (a GCRA with no burst, state in project_pacing)
-- allows. Compare-and-set on each call (still queued, not dispatched); DNC
-- re-check (-> dnc_blocked); a project whose wallet is empty is held.
-- Returns {"r":"ok"|"hold", "next_ms": when the next dispatch is allowed,
--          "calls":[{"id","r":"ok"|"wait"|"gone"|"dnc_blocked","msg":dispatch message}]}
CREATE OR REPLACE FUNCTION od_dispatch(p_project uuid, p_ids uuid[], p_redispatch_s integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    proj  projects;
    now_  timestamptz := clock_timestamp();
    t     interval;
    tat   timestamptz;
    cid   uuid;
    c     calls;
    out   jsonb := '[]'::jsonb;
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
    FOREACH cid IN ARRAY p_ids LOOP
        IF now_ < tat THEN
            out := out || jsonb_build_object('id', cid, 'r', 'wait');
            CONTINUE;
        END IF;
        UPDATE calls SET dispatched_at = now_
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
        out := out || jsonb_build_object('id', cid, 'r', 'ok', 'msg', json_build_object(
            'v', 1, 'type', 'call.dispatch', 'call_id', c.id, 'project_id', c.project_id, 'phone', c.phone,
            'scenario', c.scenario, 'metadata', c.metadata, 'caller_id', c.caller_id, 'batch_id', c.batch_id,
            'dispatched_at', od_ts(now_))::text);
    END LOOP;
    UPDATE project_pacing SET pace_tat = tat WHERE project_id = p_project;
    RETURN jsonb_build_object('r', 'ok', 'next_ms', floor(extract(epoch FROM greatest(tat, now_)) * 1000)::bigint,
                              'calls', out);
END
$$;

-- Dialer: claim a call before dialing it (compare-and-set queued -> dialing).
-- The only way a call is ever dialed; a second claim finds nothing. The same
-- attempt retried (its answer was lost with the connection) gets its claim
-- back: p_token is unique per attempt, so a redelivered message never does.
CREATE OR REPLACE FUNCTION od_claim(p_id uuid, p_dialer text, p_lease_s integer, p_token uuid) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    c calls;
    scen scenarios;
BEGIN
    UPDATE calls SET status = 'dialing', dialed_at = now(), dialer_id = p_dialer, claim_token = p_token,
                     lease_until = now() + make_interval(secs => p_lease_s)
     WHERE id = p_id AND status = 'queued' AND dispatched_at IS NOT NULL
    RETURNING * INTO c;
    IF FOUND THEN
        INSERT INTO call_events (call_id, status, at, detail)
        VALUES (c.id, 'dialing', now(), 'claimed by ' || p_dialer);
    ELSE
        SELECT * INTO c FROM calls WHERE id = p_id AND claim_token = p_token AND status = 'dialing';
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
    END IF;
    SELECT * INTO scen FROM scenarios WHERE project_id = c.project_id AND idn = c.scenario;
    RETURN json_build_object('call_id', c.id, 'project_id', c.project_id, 'phone', c.phone, 'scenario', c.scenario,
                             'disclosure', scen.disclosure, 'metadata', c.metadata, 'caller_id', c.caller_id);
END
$$;

-- Dialer: keep the lease of the calls it still has in flight.
CREATE OR REPLACE FUNCTION od_lease_renew(p_dialer text, p_ids uuid[], p_lease_s integer) RETURNS integer
LANGUAGE sql AS $$
    -- rows are locked in id order, as od_apply_events does: no deadlock between them
    WITH mine AS (
        SELECT id FROM calls
         WHERE id = ANY (p_ids) AND dialer_id = p_dialer AND status IN ('dialing', 'connected')
           AND lease_until IS NOT NULL
         ORDER BY id FOR UPDATE),
    u AS (
        UPDATE calls c SET lease_until = now() + make_interval(secs => p_lease_s)
          FROM mine WHERE c.id = mine.id
        RETURNING 1)
    SELECT count(*)::integer FROM u
$$;

-- Dialer: the final event of these calls is safely in Kafka; the reaper must
-- leave them to the outcome service.
CREATE OR REPLACE FUNCTION od_lease_release(p_dialer text, p_ids uuid[]) RETURNS void
LANGUAGE sql AS $$
    WITH mine AS (
        SELECT id FROM calls
         WHERE id = ANY (p_ids) AND dialer_id = p_dialer AND status IN ('dialing', 'connected')
         ORDER BY id FOR UPDATE)
    UPDATE calls c SET lease_until = NULL FROM mine WHERE c.id = mine.id
$$;

-- Outcome: apply call events in order, one transaction. Each element:
--   {call_id, status, allowed_from (array literal), final_state, outcome,
--    goal_completed, duration_ms, at_us, detail}
-- A status that is not allowed from the current one is ignored (forward-only);
-- a 'dialing' event is a detail (ringing) recorded while the call is dialing.
-- Completed calls are billed per started second at the project's price and
-- the wallet is debited in the same transaction. Returns the number applied.
CREATE OR REPLACE FUNCTION od_apply_events(p_events jsonb) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    e       jsonb;
    c       calls;
    at_     timestamptz;
    billed  integer;
    cost    bigint;
    applied integer := 0;
BEGIN
    -- lock the calls in id order first (as the dialer's lease updates do), so
    -- concurrent transactions on the same calls queue instead of deadlocking
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
            lease_until = CASE WHEN e->>'final_state' IS NOT NULL THEN NULL ELSE lease_until END
         WHERE id = (e->>'call_id')::uuid AND status = ANY ((e->>'allowed_from')::text[])
        RETURNING * INTO c;
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        applied := applied + 1;
        INSERT INTO call_events (call_id, status, at, detail)
        VALUES (c.id, c.status, at_, coalesce(c.final_state || CASE WHEN e->>'detail' IS NOT NULL
                                                                    THEN ': ' || (e->>'detail') ELSE '' END,
                                              e->>'detail'));
        IF billed > 0 THEN
            SELECT ceil(billed * p.price_per_min_micros / 60.0)::bigint INTO cost
              FROM projects p WHERE p.id = c.project_id;
            UPDATE calls SET cost_micros = cost WHERE id = c.id;
            UPDATE projects SET wallet_micros = wallet_micros - cost WHERE id = c.project_id;
            INSERT INTO wallet_ledger (project_id, call_id, amount_micros, reason)
            VALUES (c.project_id, c.id, -cost, 'call ' || billed || ' s');
        END IF;
    END LOOP;
    RETURN applied;
END
$$;

-- Outcome: calls whose dialer stopped renewing its lease end as internal_error.
-- They are never dialed again (guarantee 1).
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
                           duration_ms = 0, billed_s = 0
          FROM dead WHERE c.id = dead.id
        RETURNING c.id)
    INSERT INTO call_events (call_id, status, at, detail)
    SELECT id, 'failed', now(), 'internal_error: the dialer stopped renewing its lease' FROM upd;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

-- Housekeeping: idempotency records are kept at least 24 hours.
CREATE OR REPLACE FUNCTION od_expire_idempotency(p_keep_s integer) RETURNS integer
LANGUAGE sql AS $$
    WITH d AS (DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => p_keep_s) RETURNING 1)
    SELECT count(*)::integer FROM d
$$;
