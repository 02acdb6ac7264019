-- Retries (issue 7; README "Retries", docs/batches.md "Retries"): a call
-- that ends no_answer or busy is called again, up to a number of attempts,
-- after a delay. Each attempt is a call of its own, linked to the first one
-- (attempt, retry_of), inserted queued with a due time by od_retry in the
-- transaction that writes the ended attempt's final state (od_call_ended).
-- The scheduler's sweep finds it like a batch row's call, so each attempt
-- goes through pacing, the DNC re-check, the wallet, a paused batch and
-- calling windows at its own dispatch, as any queued call does.
--
-- The policy {on, max_attempts, delay_s} is the project's (outdialctl
-- project set --retry-*), or a batch's own (upload fields retry_on,
-- retry_max_attempts, retry_delay_s: the fields given, the others the
-- project's at upload). max_attempts counts the first call: 1 (the
-- default) is no retry.
--
-- Restated here: od_call_ended (od_opt_out, then od_retry), od_call_json
-- (attempt, retry_of; and 013's calling_window), od_api (GET /v1/project
-- from od_project_json, which shows the policy and 013's calling_windows),
-- od_batch_api (results.csv's attempts column). A batch's policy is taken
-- and shown by od_batch_create and od_batch_json as 017 restates them.

-- ---------------------------------------------------------------- the policy

ALTER TABLE projects
    ADD COLUMN retry_on text[] NOT NULL DEFAULT '{no_answer,busy}' CHECK (retry_on <@ '{no_answer,busy}'),
    ADD COLUMN retry_max_attempts integer NOT NULL DEFAULT 1 CHECK (retry_max_attempts BETWEEN 1 AND 10),
    ADD COLUMN retry_delay_s integer NOT NULL DEFAULT 1800 CHECK (retry_delay_s BETWEEN 1 AND 604800);

-- A batch's own policy, whole (all three set), or none: the project's applies.
ALTER TABLE batches
    ADD COLUMN retry_on text[] CHECK (retry_on <@ '{no_answer,busy}'),
    ADD COLUMN retry_max_attempts integer CHECK (retry_max_attempts BETWEEN 1 AND 10),
    ADD COLUMN retry_delay_s integer CHECK (retry_delay_s BETWEEN 1 AND 604800),
    ADD CONSTRAINT batches_retry_whole CHECK ((retry_on IS NULL) = (retry_max_attempts IS NULL)
                                              AND (retry_on IS NULL) = (retry_delay_s IS NULL));

-- The policy as the API shows it; NULL for a batch without its own.
CREATE OR REPLACE FUNCTION od_retry_json(p_on text[], p_max integer, p_delay integer) RETURNS json
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_max IS NOT NULL
                THEN json_build_object('on', to_json(p_on), 'max_attempts', p_max, 'delay_s', p_delay) END
$$;

-- ---------------------------------------------------------------- attempts

-- No foreign key on retry_of (as batch_rows): a call is never deleted apart
-- from its project, and the check would cost every delete of calls a lookup.
ALTER TABLE calls
    ADD COLUMN attempt integer NOT NULL DEFAULT 1 CHECK (attempt >= 1),  -- 1: the first call
    ADD COLUMN retry_of uuid;                                            -- the first attempt's id (NULL: the first)

-- A batch row leads to its latest attempt (results.csv joins it): the row
-- of an ended attempt is found by its call. Batch call ids are UUIDv7 in row
-- order, so the import appends to this index's right edge.
CREATE INDEX batch_rows_call ON batch_rows (call_id) WHERE call_id IS NOT NULL;

-- A UUIDv7 (RFC 9562) made in SQL, as od_uuid7 makes it in C: 48 bits of
-- Unix milliseconds, version 7, variant 10, 74 random bits. PostgreSQL 15
-- has no uuidv7(): gen_random_uuid()'s v4 gets the time in its first six
-- bytes and bits 52 and 53 set (version 4 = 0100 becomes 0111).
CREATE OR REPLACE FUNCTION od_uuid7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                                          PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp())
                                                                           * 1000)::bigint) FROM 3)
                                          FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- The retry rule, once a call's final state is written (od_call_ended):
-- a call that ended in one of the policy's states, with attempts left and
-- not in a canceled batch, gets its next attempt: a new queued call, due
-- delay_s after this one ended, with the same project, key, scenario,
-- phone, metadata, caller ID and batch. A batch's row then leads to the new
-- attempt and counts as queued again (its ended attempt leaves the
-- counters), so the batch counts each row once, by its latest attempt, and
-- is not done before that attempt is. Returns the text for the final
-- event's detail.
CREATE OR REPLACE FUNCTION od_retry(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    b       batches;
    v_on    text[];
    v_max   integer;
    v_delay integer;
    r       calls;
BEGIN
    IF c.final_state NOT IN ('no_answer', 'busy') THEN
        RETURN '';
    END IF;
    IF c.batch_id IS NOT NULL THEN
        -- shared: a cancel of the batch waits for this transaction, then cancels the new attempt with the rest
        SELECT * INTO b FROM batches WHERE id = c.batch_id FOR SHARE;
        IF b.status = 'canceled' THEN
            RETURN '';
        END IF;
    END IF;
    SELECT coalesce(b.retry_on, p.retry_on), coalesce(b.retry_max_attempts, p.retry_max_attempts),
           coalesce(b.retry_delay_s, p.retry_delay_s)
      INTO v_on, v_max, v_delay
      FROM projects p WHERE p.id = c.project_id;
    IF c.attempt >= v_max OR NOT c.final_state = ANY (v_on) THEN
        RETURN '';
    END IF;
    INSERT INTO calls (id, project_id, api_key_id, scenario, phone, metadata, caller_id, batch_id, scheduled_for,
                       due_at, created_at, published_at, attempt, retry_of)
    VALUES (od_uuid7(), c.project_id, c.api_key_id, c.scenario, c.phone, c.metadata, c.caller_id, c.batch_id,
            c.ended_at + make_interval(secs => v_delay), c.ended_at + make_interval(secs => v_delay), now(), now(),
            c.attempt + 1, coalesce(c.retry_of, c.id))
    RETURNING * INTO r;
    IF c.batch_id IS NOT NULL THEN
        UPDATE batch_rows SET call_id = r.id WHERE batch_id = c.batch_id AND call_id = c.id;
        INSERT INTO batch_deltas (batch_id, k, n)
        VALUES (c.batch_id, 's:' || c.status, -1), (c.batch_id, 'f:' || c.final_state, -1),
               (c.batch_id, 's:queued', 1);
    END IF;
    RETURN format('; retry %s of %s at %s as call %s', r.attempt, v_max, od_ts(r.due_at), r.id);
END
$$;

-- What follows a call's end (011): opt-out, then retries.
CREATE OR REPLACE FUNCTION od_call_ended(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN od_opt_out(c, e) || od_retry(c, e);
END
$$;

-- The call object (012's), restated: attempt and retry_of after batch_id,
-- and the calling window (013's quiet hours) last.
-- Still a single SELECT, so PostgreSQL inlines it. The ingress writes the
-- same object for a 202 (call_body in services/ingress/ingress.c).
CREATE OR REPLACE FUNCTION od_call_json(c calls) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', c.id, 'status', c.status, 'final_state', c.final_state, 'outcome', c.outcome,
        'goal_completed', c.goal_completed, 'scenario', c.scenario, 'phone', c.phone,
        'metadata', c.metadata, 'scheduled_for', od_ts(c.scheduled_for), 'caller_id', c.caller_id,
        'batch_id', c.batch_id, 'attempt', c.attempt, 'retry_of', c.retry_of,
        'created_at', od_ts(c.created_at), 'dialed_at', od_ts(c.dialed_at),
        'connected_at', od_ts(c.connected_at), 'ended_at', od_ts(c.ended_at),
        'duration_s', round(c.duration_ms / 1000.0, 3), 'billed_s', c.billed_s,
        'cost_micros', c.cost_micros,
        'compliance', CASE WHEN c.opt_out_script IS NOT NULL THEN json_build_object(
                               'disclosure_enabled', c.disclosure IS NOT NULL, 'disclosure', c.disclosure,
                               'opt_out_script', c.opt_out_script) END,
        'calling_window', od_call_window_json(c))
$$;

-- ---------------------------------------------------------------- GET /v1/project

-- The project object of GET /v1/project: 002's, with the retry policy.
-- Later settings are added here, not to od_api.
CREATE OR REPLACE FUNCTION od_project_json(p projects) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('id', p.id, 'name', p.name, 'pacing_per_min', p.pacing_per_min,
               'limits', json_build_object('calls_per_min', p.calls_per_min,
                                           'requests_per_hour', p.requests_per_hour),
               'wallet', json_build_object('balance_micros', p.wallet_micros, 'currency', p.currency),
               'price_per_min_micros', p.price_per_min_micros,
               'calling_windows', p.calling_windows,
               'retry', od_retry_json(p.retry_on, p.retry_max_attempts, p.retry_delay_s),
               'caller_ids', (SELECT coalesce(json_agg(ci.phone ORDER BY ci.verified_at, ci.phone), '[]')
                                FROM caller_ids ci WHERE ci.project_id = p.id),
               'created_at', od_ts(p.created_at))
$$;

-- od_api (002's), restated: get_project is od_project_json's, and
-- list_scenarios is gone (GET /v1/scenarios is od_scenario_api's, 012).
CREATE OR REPLACE FUNCTION od_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text, p_args jsonb)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl  jsonb;
    out jsonb;
    c   calls;
BEGIN
    IF p_op IN ('get_call', 'list_calls', 'get_project', 'list_keys') THEN
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
            SELECT od_project_json(p) FROM projects p WHERE p.id = p_project)::text);
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

-- ---------------------------------------------------------------- batches

-- od_batch_api (005's), restated: results.csv ends with an attempts column
-- (the row's latest attempt's number; empty for a rejected row).
CREATE OR REPLACE FUNCTION od_batch_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text,
                                        p_args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl  jsonb;
    out jsonb;
    b   batches;
    page batches[];
    lim integer := least(greatest(coalesce((p_args->>'limit')::integer, 50), 1), 200);
BEGIN
    IF p_op IN ('get_batch', 'list_batches', 'batch_head') THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    rl := od_rate_take(p_key_id, NULL, p_req_per_hour, now());
    IF NOT (rl->>'ok')::boolean THEN
        RETURN jsonb_build_object('status', 429, 'code', 'rate_limited', 'rl', rl);
    END IF;
    CASE p_op
    WHEN 'get_batch', 'batch_head' THEN
        SELECT * INTO b FROM batches WHERE id = (p_args->>'id')::uuid AND project_id = p_project;
        IF NOT FOUND THEN
            out := jsonb_build_object('status', 404, 'code', 'not_found');
        ELSIF p_op = 'batch_head' AND b.validated_at IS NULL THEN
            out := jsonb_build_object('status', 409, 'code', 'batch_validating');
        ELSIF p_op = 'batch_head' THEN
            -- results.csv: the header line; the rows follow page by page
            out := jsonb_build_object('status', 200, 'body', b.header_line ||
                       ',call_id,status,final_state,outcome,goal_completed,duration_s,cost_micros,ended_at,error,attempts'
                       || ',recording_duration_s,recording_sha256,recording_deleted_at'
                       || E'\r\n', 'file_name', b.file_name);
        ELSE
            out := jsonb_build_object('status', 200, 'body', od_batch_json(b, true)::text);
        END IF;
    WHEN 'list_batches' THEN
        SELECT coalesce(array_agg(x ORDER BY x.id DESC), '{}') INTO page FROM (
            SELECT * FROM batches y
             WHERE y.project_id = p_project AND (p_args->>'cursor' IS NULL OR y.id < (p_args->>'cursor')::uuid)
             ORDER BY y.id DESC LIMIT lim + 1) x;
        out := jsonb_build_object('status', 200, 'body', json_build_object(
            'data', (SELECT coalesce(json_agg(od_batch_json(x, false) ORDER BY x.id DESC), '[]')
                       FROM unnest(page[1:lim]) AS x),
            'next_cursor', CASE WHEN cardinality(page) > lim THEN page[lim].id END)::text);
    WHEN 'pause_batch', 'resume_batch', 'cancel_batch' THEN
        out := od_batch_control(p_project, (p_args->>'id')::uuid, split_part(p_op, '_', 1));
    ELSE
        RAISE EXCEPTION 'unknown operation %', p_op;
    END CASE;
    RETURN out || jsonb_build_object('rl', rl);
END
$$;
