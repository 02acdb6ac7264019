-- CSV batches (docs/batches.md): the batch, its rows as uploaded, counters
-- kept in the transaction of every state change, and the events the webhook
-- service delivers.

CREATE TABLE batches (
    id             uuid PRIMARY KEY,            -- UUIDv7: id order is creation order (cursor pagination)
    project_id     uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    api_key_id     uuid,
    status         text NOT NULL
                   CHECK (status IN ('validating','scheduled','running','paused','completed','canceled')),
    scenario       text NOT NULL,
    pacing_per_min integer NOT NULL CHECK (pacing_per_min > 0),
    start_at       timestamptz NOT NULL,
    caller_id      text,
    file_name      text,
    columns        text[] NOT NULL,             -- the header as uploaded (trimmed)
    header_line    text NOT NULL,               -- the same, CSV-encoded for results.csv
    total_rows     integer NOT NULL,
    accepted_rows  integer NOT NULL,
    rejected_rows  integer NOT NULL,
    row_errors     jsonb NOT NULL,              -- the first 100: [{"row", "code"}]
    pace_tat       timestamptz,                 -- the batch's own pacing (GCRA, no burst)
    created_at     timestamptz NOT NULL DEFAULT now(),
    started_at     timestamptz,                 -- first call dispatched
    paused_at      timestamptz,
    canceled_at    timestamptz,
    finished_at    timestamptz                  -- every accepted row final (or nothing left in flight after cancel)
);
CREATE INDEX batches_project ON batches (project_id, id DESC);

-- Every data row as uploaded, for results.csv: `line` is its cells already
-- CSV-encoded (neutralised, quoted), so the export only joins the call's state.
-- No foreign key: 100,000 rows are inserted in one statement, and a row lives
-- and dies with its batch (od_batch_delete_rows).
CREATE TABLE batch_rows (
    batch_id uuid NOT NULL,
    row_no   integer NOT NULL,                  -- 1 = first data row
    line     text NOT NULL,
    call_id  uuid,                              -- NULL when rejected
    error    text,                              -- the rejection code
    PRIMARY KEY (batch_id, row_no)
);

-- Counters per batch: "s:<status>", "f:<final_state>", "o:<outcome>", "goal".
-- A state change of a batch's call appends its deltas (trigger below) in its
-- own transaction, so no two transactions ever wait for one counter row; the
-- outcome service folds the deltas into batch_counts every second
-- (od_batch_compact). A batch's counts are batch_counts plus its pending
-- deltas: never a scan of its calls.
CREATE TABLE batch_counts (
    batch_id uuid NOT NULL,
    k        text NOT NULL,
    n        bigint NOT NULL,
    PRIMARY KEY (batch_id, k)
);
CREATE TABLE batch_deltas (
    id       bigserial PRIMARY KEY,
    batch_id uuid NOT NULL,
    k        text NOT NULL,
    n        integer NOT NULL
);
CREATE INDEX batch_deltas_batch ON batch_deltas (batch_id);

-- Events of the customer's objects (batch.completed now; call events with
-- the webhooks), written in the transaction of the change that causes them.
CREATE TABLE domain_events (
    id         bigserial PRIMARY KEY,
    project_id uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    type       text NOT NULL,
    object_id  uuid NOT NULL,
    at         timestamptz NOT NULL DEFAULT now(),
    data       jsonb NOT NULL
);
CREATE INDEX domain_events_project ON domain_events (project_id, id);

CREATE OR REPLACE FUNCTION od_batch_track() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO batch_deltas (batch_id, k, n)
        VALUES (NEW.batch_id, 's:' || OLD.status, -1), (NEW.batch_id, 's:' || NEW.status, 1);
    END IF;
    IF NEW.final_state IS NOT NULL AND OLD.final_state IS NULL THEN
        INSERT INTO batch_deltas (batch_id, k, n) VALUES (NEW.batch_id, 'f:' || NEW.final_state, 1);
    END IF;
    IF NEW.outcome IS DISTINCT FROM OLD.outcome THEN
        INSERT INTO batch_deltas (batch_id, k, n)
        SELECT NEW.batch_id, 'o:' || x.o, x.n
          FROM (VALUES (OLD.outcome, -1), (NEW.outcome, 1)) x(o, n) WHERE x.o IS NOT NULL;
    END IF;
    IF coalesce(NEW.goal_completed, false) <> coalesce(OLD.goal_completed, false) THEN
        INSERT INTO batch_deltas (batch_id, k, n)
        VALUES (NEW.batch_id, 'goal', CASE WHEN NEW.goal_completed THEN 1 ELSE -1 END);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER calls_batch_track AFTER UPDATE ON calls FOR EACH ROW
    WHEN (NEW.batch_id IS NOT NULL AND (OLD.status IS DISTINCT FROM NEW.status
          OR OLD.outcome IS DISTINCT FROM NEW.outcome OR OLD.goal_completed IS DISTINCT FROM NEW.goal_completed))
    EXECUTE FUNCTION od_batch_track();

-- A batch's counters now: folded ones plus pending deltas.
CREATE OR REPLACE FUNCTION od_batch_counters(p_batch uuid) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT coalesce(jsonb_object_agg(k, n), '{}') FROM (
        SELECT k, sum(n) AS n FROM (
            SELECT k, n FROM batch_counts WHERE batch_id = p_batch
            UNION ALL
            SELECT k, n FROM batch_deltas WHERE batch_id = p_batch) x
         GROUP BY k) y
$$;

-- The batch object of the API (docs/batches.md).
CREATE OR REPLACE FUNCTION od_batch_json(b batches, p_errors boolean) RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c    jsonb := od_batch_counters(b.id);
    done bigint := coalesce((c->>'f:completed')::bigint, 0);
    o    json;
BEGIN
    o := json_build_object(
        'id', b.id, 'status', b.status, 'scenario', b.scenario, 'pacing_per_min', b.pacing_per_min,
        'start_at', od_ts(b.start_at), 'caller_id', b.caller_id, 'file_name', b.file_name, 'columns', b.columns,
        'total_rows', b.total_rows, 'accepted_rows', b.accepted_rows, 'rejected_rows', b.rejected_rows);
    IF p_errors THEN
        o := (left(o::text, -1) || ', "row_errors" : ' || b.row_errors::text || '}')::json;
    END IF;
    RETURN (left(o::text, -1) || ', ' || right(json_build_object(
        'counts', (SELECT json_object_agg(s, coalesce((c->>('s:' || s))::bigint, 0) ORDER BY i)
                     FROM unnest(ARRAY['queued','dialing','connected','completed','failed','canceled'])
                          WITH ORDINALITY u(s, i)),
        'final_states', (SELECT json_object_agg(f, coalesce((c->>('f:' || f))::bigint, 0) ORDER BY i)
                           FROM unnest(ARRAY['completed','no_answer','busy','voicemail_detected','invalid_number',
                                             'caller_id_unauthorized','provider_error','internal_error','canceled',
                                             'dnc_blocked']) WITH ORDINALITY u(f, i)),
        'success_rate', CASE WHEN done > 0
                             THEN round(coalesce((c->>'o:success')::numeric, 0) / done, 4) END,
        'goal_completion_rate', CASE WHEN done > 0
                                     THEN round(coalesce((c->>'goal')::numeric, 0) / done, 4) END,
        'created_at', od_ts(b.created_at), 'started_at', od_ts(b.started_at),
        'finished_at', od_ts(b.finished_at))::text, -1))::json;
END
$$;

-- A batch is finished when none of its calls is queued, dialing or
-- connected: completed (or it stays canceled), with its batch.completed event.
-- Called with the batch row locked.
CREATE OR REPLACE FUNCTION od_batch_finish_if_done(p_batch uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    c jsonb := od_batch_counters(p_batch);
    b batches;
BEGIN
    IF coalesce((c->>'s:queued')::bigint, 0) + coalesce((c->>'s:dialing')::bigint, 0)
       + coalesce((c->>'s:connected')::bigint, 0) > 0 THEN
        RETURN false;
    END IF;
    UPDATE batches SET status = CASE WHEN status = 'canceled' THEN 'canceled' ELSE 'completed' END,
                       finished_at = now()
     WHERE id = p_batch AND finished_at IS NULL AND status <> 'paused'
    RETURNING * INTO b;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    IF b.status = 'completed' THEN
        INSERT INTO domain_events (project_id, type, object_id, data)
        VALUES (b.project_id, 'batch.completed', b.id, od_batch_json(b, false)::jsonb);
    END IF;
    RETURN true;
END
$$;

-- The outcome service, every second: folds up to p_limit deltas into the
-- counters and finishes the batches they show done. Copies of the service
-- share the work (SKIP LOCKED). Returns the number of deltas folded.
CREATE OR REPLACE FUNCTION od_batch_compact(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_ids uuid[];
    v_n   integer;
    bid   uuid;
BEGIN
    WITH d AS (
        DELETE FROM batch_deltas WHERE id IN (
            SELECT id FROM batch_deltas ORDER BY id LIMIT p_limit FOR UPDATE SKIP LOCKED)
        RETURNING batch_id, k, n
    ), s AS (
        SELECT batch_id, k, sum(n) AS n, count(*) AS cnt FROM d GROUP BY batch_id, k
    ), u AS (
        INSERT INTO batch_counts (batch_id, k, n)
        SELECT batch_id, k, n FROM s ORDER BY batch_id, k
        ON CONFLICT (batch_id, k) DO UPDATE SET n = batch_counts.n + excluded.n
        RETURNING batch_id
    )
    SELECT (SELECT array_agg(DISTINCT batch_id ORDER BY batch_id) FROM u), (SELECT coalesce(sum(cnt), 0) FROM s)
      INTO v_ids, v_n;
    IF v_ids IS NOT NULL THEN
        FOR bid IN SELECT b.id FROM batches b
                    WHERE b.id = ANY (v_ids) AND b.finished_at IS NULL AND b.status IN ('scheduled', 'running', 'canceled')
                    ORDER BY b.id FOR UPDATE LOOP
            PERFORM od_batch_finish_if_done(bid);
        END LOOP;
    END IF;
    RETURN v_n;
END
$$;

-- POST /v1/batches after the ingress parsed and checked the file. p:
--   {"key_id", "project_id", "requests_per_hour", "id", "scenario", "pacing_per_min" (null: default),
--    "start_at" (null: now), "caller_id" (null: the project's default), "file_name", "columns",
--    "header_line", "idem_key", "request_hash",
--    "rows": [[row_no, call_id or null, phone or null, error or null, metadata or null, line], ...]}
-- Rows arrive checked (phone syntax, duplicates, field count); the DNC list
-- is checked here. Returns {"status", "body"} or {"status", "code", "detail"},
-- with "rl" (rate limit) and "replay" for a replayed answer.
CREATE OR REPLACE FUNCTION od_batch_create(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_project uuid := (p->>'project_id')::uuid;
    now_      timestamptz := now();
    idem      idempotency_keys;
    rl        jsonb;
    proj      projects;
    v_caller  text;
    v_pacing  integer;
    v_start   timestamptz := coalesce((p->>'start_at')::timestamptz, now());
    b         batches;
    body      text;
BEGIN
    -- idempotency first: a retried upload is never rate limited
    IF p->>'idem_key' IS NOT NULL THEN
        SELECT * INTO idem FROM idempotency_keys WHERE project_id = v_project AND key = p->>'idem_key';
        IF FOUND THEN
            RETURN od_idem_decide(idem, p->>'request_hash', now_);
        END IF;
    END IF;
    rl := od_rate_take((p->>'key_id')::uuid, NULL, (p->>'requests_per_hour')::integer, now_);
    IF NOT (rl->>'ok')::boolean THEN
        RETURN jsonb_build_object('status', 429, 'code', 'rate_limited', 'rl', rl);
    END IF;

    SELECT * INTO proj FROM projects WHERE id = v_project;
    IF NOT EXISTS (SELECT 1 FROM scenarios s WHERE s.project_id = v_project AND s.idn = p->>'scenario') THEN
        RETURN jsonb_build_object('status', 422, 'code', 'unknown_scenario', 'field', 'scenario',
                                  'detail', 'the project has no scenario with this name', 'rl', rl);
    END IF;
    SELECT ci.phone INTO v_caller FROM caller_ids ci
     WHERE ci.project_id = v_project AND (p->>'caller_id' IS NULL OR ci.phone = p->>'caller_id')
     ORDER BY ci.verified_at, ci.phone LIMIT 1;
    IF p->>'caller_id' IS NOT NULL AND v_caller IS NULL THEN
        RETURN jsonb_build_object('status', 422, 'code', 'caller_id_not_verified', 'field', 'caller_id',
                                  'detail', 'caller_id is not one of the project''s verified numbers', 'rl', rl);
    END IF;
    v_pacing := coalesce((p->>'pacing_per_min')::integer, least(5, proj.pacing_per_min));
    IF v_pacing > proj.pacing_per_min THEN
        RETURN jsonb_build_object('status', 422, 'code', 'pacing_above_project_rate', 'field', 'pacing_per_min',
                                  'detail', format('pacing_per_min can be at most the project''s rate, %s a minute',
                                                   proj.pacing_per_min), 'rl', rl);
    END IF;
    IF proj.wallet_micros <= 0 THEN
        RETURN jsonb_build_object('status', 402, 'code', 'insufficient_funds',
                                  'detail', 'the project''s wallet is empty; top it up to place calls', 'rl', rl);
    END IF;

    -- the key is taken before the work; a concurrent upload with the same key
    -- that got it first is replayed (its transaction is over when this insert returns)
    IF p->>'idem_key' IS NOT NULL THEN
        INSERT INTO idempotency_keys (project_id, key, request_hash, state, status_code, response)
        VALUES (v_project, p->>'idem_key', p->>'request_hash', 'in_flight', 201, NULL)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            SELECT * INTO idem FROM idempotency_keys WHERE project_id = v_project AND key = p->>'idem_key';
            RETURN od_idem_decide(idem, p->>'request_hash', now_) || jsonb_build_object('rl', rl);
        END IF;
    END IF;

    -- one statement: the rows (with the DNC list applied), the batch, its rows, its calls
    WITH r AS MATERIALIZED (
        SELECT (x->>0)::integer AS row_no,
               CASE WHEN d.phone IS NULL THEN (x->>1)::uuid END AS call_id,
               x->>2 AS phone,
               coalesce(x->>3, CASE WHEN d.phone IS NOT NULL THEN 'phone_on_dnc_list' END) AS error,
               x->4 AS metadata, x->>5 AS line
          FROM jsonb_array_elements(p->'rows') x
          LEFT JOIN dnc d ON x->>1 IS NOT NULL AND d.project_id = v_project AND d.phone = x->>2
    ), ins_rows AS (
        INSERT INTO batch_rows (batch_id, row_no, line, call_id, error)
        SELECT (p->>'id')::uuid, row_no, line, call_id, error FROM r
    ), ins_calls AS (
        INSERT INTO calls (id, project_id, api_key_id, scenario, phone, metadata, caller_id, batch_id,
                           scheduled_for, due_at, created_at, published_at)
        SELECT call_id, v_project, (p->>'key_id')::uuid, p->>'scenario', phone, coalesce(metadata, '{}'),
               v_caller, (p->>'id')::uuid, (p->>'start_at')::timestamptz, greatest(v_start, now_), now_, now_
          FROM r WHERE call_id IS NOT NULL ORDER BY call_id
    )
    INSERT INTO batches (id, project_id, api_key_id, status, scenario, pacing_per_min, start_at, caller_id,
                         file_name, columns, header_line, total_rows, accepted_rows, rejected_rows, row_errors,
                         created_at)
    SELECT (p->>'id')::uuid, v_project, (p->>'key_id')::uuid, 'scheduled', p->>'scenario', v_pacing, v_start,
           v_caller, p->>'file_name', ARRAY(SELECT jsonb_array_elements_text(p->'columns')), p->>'header_line',
           count(*), count(*) FILTER (WHERE call_id IS NOT NULL), count(*) FILTER (WHERE call_id IS NULL),
           coalesce((SELECT jsonb_agg(jsonb_build_object('row', e.row_no, 'code', e.error) ORDER BY e.row_no)
                       FROM (SELECT row_no, error FROM r WHERE error IS NOT NULL
                              ORDER BY row_no LIMIT 100) e), '[]'),
           now_
      FROM r
    RETURNING * INTO b;
    IF b.accepted_rows > 0 THEN
        INSERT INTO batch_counts (batch_id, k, n) VALUES (b.id, 's:queued', b.accepted_rows);
    ELSIF od_batch_finish_if_done(b.id) THEN
        SELECT * INTO b FROM batches WHERE id = b.id;
    END IF;

    body := od_batch_json(b, true)::text;
    IF p->>'idem_key' IS NOT NULL THEN
        UPDATE idempotency_keys SET state = 'done', response = body
         WHERE project_id = v_project AND key = p->>'idem_key';
    END IF;
    RETURN jsonb_build_object('status', 201, 'body', body, 'rl', rl);
END
$$;

-- Pause, resume, cancel (docs/batches.md). The batch row is locked first:
-- od_dispatch locks batch rows before call rows too.
CREATE OR REPLACE FUNCTION od_batch_control(p_project uuid, p_id uuid, p_op text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    b batches;
BEGIN
    SELECT * INTO b FROM batches WHERE id = p_id AND project_id = p_project FOR UPDATE;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 404, 'code', 'not_found');
    END IF;
    IF b.status = 'completed' OR (b.status = 'canceled' AND p_op <> 'cancel') THEN
        RETURN jsonb_build_object('status', 409, 'code', 'batch_finished',
                                  'detail', 'the batch is ' || b.status || ' and cannot be ' ||
                                            CASE p_op WHEN 'pause' THEN 'paused' WHEN 'resume' THEN 'resumed'
                                                      ELSE 'canceled' END);
    END IF;
    IF p_op = 'pause' AND b.status IN ('scheduled', 'running') THEN
        UPDATE batches SET status = 'paused', paused_at = now() WHERE id = b.id RETURNING * INTO b;
    ELSIF p_op = 'resume' AND b.status = 'paused' THEN
        UPDATE batches SET status = CASE WHEN started_at IS NULL THEN 'scheduled' ELSE 'running' END,
                           paused_at = NULL
         WHERE id = b.id RETURNING * INTO b;
        IF b.status = 'running' AND od_batch_finish_if_done(b.id) THEN
            SELECT * INTO b FROM batches WHERE id = b.id;
        END IF;
    ELSIF p_op = 'cancel' AND b.status <> 'canceled' THEN
        UPDATE batches SET status = 'canceled', canceled_at = now(), paused_at = NULL
         WHERE id = b.id RETURNING * INTO b;
        WITH c AS (
            UPDATE calls SET status = 'canceled', final_state = 'canceled', ended_at = now()
             WHERE batch_id = b.id AND status = 'queued'
            RETURNING id
        )
        INSERT INTO call_events (call_id, status, at, detail)
        SELECT id, 'canceled', now(), 'the batch was canceled' FROM c;
        IF od_batch_finish_if_done(b.id) THEN
            SELECT * INTO b FROM batches WHERE id = b.id;
        END IF;
    END IF;
    RETURN jsonb_build_object('status', 200, 'body', od_batch_json(b, true)::text);
END
$$;

-- The batch endpoints but upload and results (those have their own
-- statements): rate limit, then the operation, as od_api.
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
        ELSIF p_op = 'batch_head' THEN
            -- results.csv: the header line; the rows follow page by page
            out := jsonb_build_object('status', 200, 'body', b.header_line ||
                       ',call_id,status,final_state,outcome,goal_completed,duration_s,cost_micros,ended_at,error'
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

-- The scheduler's sweep leaves out the calls of paused batches, and takes a
-- batch's calls in row order (ids are UUIDv7 in row order).
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
       AND (c.batch_id IS NULL OR NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = c.batch_id AND b.status = 'paused'))
     ORDER BY c.due_at, c.id
     LIMIT p_limit
$$;

-- od_dispatch with batches: a batch's own pacing (GCRA without burst, inside
-- the project's), a paused batch's calls are handed back ("gone": the sweep
-- reloads them after resume). Batch rows are locked before call rows, in id
-- order, as od_batch_control does. next_ms: when the project may send again,
-- or, if every offered call waited for its batch, when the first of them may.
CREATE OR REPLACE FUNCTION od_dispatch(p_project uuid, p_ids uuid[], p_redispatch_s integer) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    proj   projects;
    now_   timestamptz := clock_timestamp();
    t      interval;
    tat    timestamptz;
    cid    uuid;
    c      calls;
    b      batches;
    v_bid  uuid;
    out    jsonb := '[]'::jsonb;
    v_ok   boolean := false;
    v_wake timestamptz;
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
    FOREACH cid IN ARRAY p_ids LOOP
        IF now_ < tat THEN
            out := out || jsonb_build_object('id', cid, 'r', 'wait');
            v_wake := least(v_wake, tat);
            CONTINUE;
        END IF;
        SELECT x.batch_id INTO v_bid FROM calls x WHERE x.id = cid;
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

-- The dialer's claim: a call of a paused batch is not claimed; it goes back
-- to the queue (dispatched_at cleared) for the sweep to find after resume.
CREATE OR REPLACE FUNCTION od_claim(p_id uuid, p_dialer text, p_lease_s integer, p_token uuid) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    c calls;
    scen scenarios;
BEGIN
    UPDATE calls SET status = 'dialing', dialed_at = now(), dialer_id = p_dialer, claim_token = p_token,
                     lease_until = now() + make_interval(secs => p_lease_s)
     WHERE id = p_id AND status = 'queued' AND dispatched_at IS NOT NULL
       AND (batch_id IS NULL OR NOT EXISTS (SELECT 1 FROM batches b WHERE b.id = calls.batch_id
                                                                     AND b.status = 'paused'))
    RETURNING * INTO c;
    IF FOUND THEN
        INSERT INTO call_events (call_id, status, at, detail)
        VALUES (c.id, 'dialing', now(), 'claimed by ' || p_dialer);
    ELSE
        SELECT * INTO c FROM calls WHERE id = p_id AND claim_token = p_token AND status = 'dialing';
        IF NOT FOUND THEN
            UPDATE calls SET dispatched_at = NULL
             WHERE id = p_id AND status = 'queued' AND batch_id IN (SELECT id FROM batches WHERE status = 'paused');
            RETURN NULL;
        END IF;
    END IF;
    SELECT * INTO scen FROM scenarios WHERE project_id = c.project_id AND idn = c.scenario;
    RETURN json_build_object('call_id', c.id, 'project_id', c.project_id, 'phone', c.phone, 'scenario', c.scenario,
                             'disclosure', scen.disclosure, 'metadata', c.metadata, 'caller_id', c.caller_id);
END
$$;
