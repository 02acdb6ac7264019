-- Batches are validated after the answer (docs/batches.md, "Validation"):
-- POST /v1/batches checks the file's structure, stores the file and answers
-- with the batch `validating`; the ingress then checks every row and creates
-- the calls in one transaction (od_batch_import). A batch whose ingress died
-- before that is taken over by another copy once its lease has run out
-- (od_batch_import_claim), so an accepted upload is never lost.

ALTER TABLE batches ADD COLUMN validated_at timestamptz,  -- rows checked, calls created
                    ADD COLUMN import_owner text,         -- the ingress validating it
                    ADD COLUMN import_lease timestamptz;  -- until when that ingress has it
UPDATE batches SET validated_at = created_at;
CREATE INDEX batches_validating ON batches (import_lease) WHERE validated_at IS NULL;

-- The uploaded file until its batch is validated. Not compressed: storing it
-- is what the uploader waits for.
CREATE TABLE batch_uploads (
    batch_id uuid PRIMARY KEY REFERENCES batches ON DELETE CASCADE,
    csv      text NOT NULL
);
ALTER TABLE batch_uploads ALTER COLUMN csv SET STORAGE EXTERNAL;

-- How long an ingress keeps a batch to validate: reading a row and
-- inserting its call take ~50 µs; twice that, plus 30 s.
CREATE OR REPLACE FUNCTION od_batch_lease(p_rows integer) RETURNS interval
LANGUAGE sql IMMUTABLE AS $$
    SELECT make_interval(secs => 30 + p_rows * 0.0001)
$$;

DROP FUNCTION od_batch_create(jsonb);

-- POST /v1/batches after the ingress checked the file's structure. p:
--   {"key_id", "project_id", "requests_per_hour", "id", "scenario", "pacing_per_min" (null: default),
--    "start_at" (null: now), "caller_id" (null: the project's default), "file_name", "columns",
--    "header_line", "total_rows", "idem_key", "request_hash", "owner"}
-- p_csv: the file. Returns {"status", "body"} or {"status", "code", "detail"},
-- with "rl" (rate limit), and "r" for an Idempotency-Key answer.
CREATE OR REPLACE FUNCTION od_batch_create(p jsonb, p_csv text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_project uuid := (p->>'project_id')::uuid;
    now_      timestamptz := now();
    idem      idempotency_keys;
    rl        jsonb;
    proj      projects;
    v_caller  text;
    v_pacing  integer;
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

    INSERT INTO batches (id, project_id, api_key_id, status, scenario, pacing_per_min, start_at, caller_id,
                         file_name, columns, header_line, total_rows, accepted_rows, rejected_rows, row_errors,
                         created_at, import_owner, import_lease)
    VALUES ((p->>'id')::uuid, v_project, (p->>'key_id')::uuid, 'validating', p->>'scenario', v_pacing,
            coalesce((p->>'start_at')::timestamptz, now_), v_caller, p->>'file_name',
            ARRAY(SELECT jsonb_array_elements_text(p->'columns')), p->>'header_line', (p->>'total_rows')::integer,
            0, 0, '[]', now_, p->>'owner', now_ + od_batch_lease((p->>'total_rows')::integer))
    RETURNING * INTO b;
    INSERT INTO batch_uploads (batch_id, csv) VALUES (b.id, p_csv);

    body := od_batch_json(b, true)::text;
    IF p->>'idem_key' IS NOT NULL THEN
        UPDATE idempotency_keys SET state = 'done', response = body
         WHERE project_id = v_project AND key = p->>'idem_key';
    END IF;
    RETURN jsonb_build_object('status', 201, 'body', body, 'rl', rl);
END
$$;

-- The validation's result, from the ingress that holds the batch. p:
--   {"id", "owner", "rows": [[row_no, call_id or null, phone or null, error or null, metadata or null, line], ...]}
-- Rows arrive checked (phone, duplicates, field count, metadata size); the
-- DNC list is checked here. One transaction: the rows, the calls (canceled
-- at once if the batch was canceled meanwhile), the counts, the batch
-- `scheduled` (a paused batch stays paused). Returns {"r": "imported",
-- "status", "project_id", "accepted", "rejected"}, or {"r": "skipped"} when
-- the batch is not this ingress's to validate any more.
CREATE OR REPLACE FUNCTION od_batch_import(p jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    b          batches;
    now_       timestamptz := now();
    v_canceled boolean;
BEGIN
    SELECT * INTO b FROM batches WHERE id = (p->>'id')::uuid FOR UPDATE;
    IF NOT FOUND OR b.validated_at IS NOT NULL OR b.import_owner IS DISTINCT FROM p->>'owner' THEN
        RETURN jsonb_build_object('r', 'skipped');
    END IF;
    v_canceled := b.status = 'canceled';
    WITH r AS MATERIALIZED (
        SELECT (x->>0)::integer AS row_no,
               CASE WHEN d.phone IS NULL THEN (x->>1)::uuid END AS call_id,
               x->>2 AS phone,
               coalesce(x->>3, CASE WHEN d.phone IS NOT NULL THEN 'phone_on_dnc_list' END) AS error,
               x->4 AS metadata, x->>5 AS line
          FROM jsonb_array_elements(p->'rows') x
          LEFT JOIN dnc d ON x->>1 IS NOT NULL AND d.project_id = b.project_id AND d.phone = x->>2
    ), ins_rows AS (
        INSERT INTO batch_rows (batch_id, row_no, line, call_id, error)
        SELECT b.id, row_no, line, call_id, error FROM r
    ), ins_calls AS (
        INSERT INTO calls (id, project_id, api_key_id, scenario, phone, metadata, caller_id, batch_id,
                           scheduled_for, due_at, created_at, published_at, status, final_state, ended_at)
        SELECT call_id, b.project_id, b.api_key_id, b.scenario, phone, coalesce(metadata, '{}'), b.caller_id, b.id,
               -- start_at was given iff it differs from the creation time (od_batch_create)
               CASE WHEN b.start_at <> b.created_at THEN b.start_at END, greatest(b.start_at, now_), now_, now_,
               CASE WHEN v_canceled THEN 'canceled' ELSE 'queued' END,
               CASE WHEN v_canceled THEN 'canceled' END, CASE WHEN v_canceled THEN now_ END
          FROM r WHERE call_id IS NOT NULL ORDER BY call_id
        RETURNING id
    ), ins_events AS (
        INSERT INTO call_events (call_id, status, at, detail)
        SELECT id, 'canceled', now_, 'the batch was canceled' FROM ins_calls WHERE v_canceled
    )
    UPDATE batches SET total_rows = s.total, accepted_rows = s.accepted, rejected_rows = s.total - s.accepted,
                       row_errors = s.errors, validated_at = now_, import_owner = NULL, import_lease = NULL,
                       status = CASE WHEN status = 'validating' THEN 'scheduled' ELSE status END
      FROM (SELECT count(*) AS total, count(*) FILTER (WHERE call_id IS NOT NULL) AS accepted,
                   coalesce((SELECT jsonb_agg(jsonb_build_object('row', e.row_no, 'code', e.error) ORDER BY e.row_no)
                               FROM (SELECT row_no, error FROM r WHERE error IS NOT NULL
                                      ORDER BY row_no LIMIT 100) e), '[]') AS errors
              FROM r) s
     WHERE batches.id = b.id
    RETURNING batches.* INTO b;
    IF b.accepted_rows > 0 THEN
        INSERT INTO batch_counts (batch_id, k, n)
        SELECT b.id, k, b.accepted_rows
          FROM unnest(CASE WHEN v_canceled THEN ARRAY['s:canceled', 'f:canceled'] ELSE ARRAY['s:queued'] END) k;
    END IF;
    IF od_batch_finish_if_done(b.id) THEN
        SELECT * INTO b FROM batches WHERE id = b.id;
    END IF;
    DELETE FROM batch_uploads WHERE batch_id = b.id;
    RETURN jsonb_build_object('r', 'imported', 'status', b.status, 'project_id', b.project_id,
                              'accepted', b.accepted_rows, 'rejected', b.rejected_rows);
END
$$;

-- An ingress takes over one batch whose validator's lease ran out (that
-- ingress died or lost the database): the batch id and its file, or no row.
CREATE OR REPLACE FUNCTION od_batch_import_claim(p_owner text) RETURNS TABLE (id uuid, csv text)
LANGUAGE sql AS $$
    WITH c AS (
        SELECT b.id FROM batches b
         WHERE b.validated_at IS NULL AND b.import_lease < now()
         ORDER BY b.import_lease LIMIT 1
           FOR UPDATE SKIP LOCKED
    ), u AS (
        UPDATE batches b SET import_owner = p_owner, import_lease = now() + od_batch_lease(b.total_rows)
          FROM c WHERE b.id = c.id
        RETURNING b.id
    )
    SELECT u.id, x.csv FROM u JOIN batch_uploads x ON x.batch_id = u.id
$$;

-- od_batch_finish_if_done: a batch still validating has no counts yet and
-- is not done (unless canceled: its calls will be created canceled).
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
       AND (validated_at IS NOT NULL OR status = 'canceled')
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

-- Pause and cancel apply to a batch still validating too; resuming it goes
-- back to validating. A batch with no call to wait for completes on resume.
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
    IF p_op = 'pause' AND b.status IN ('validating', 'scheduled', 'running') THEN
        UPDATE batches SET status = 'paused', paused_at = now() WHERE id = b.id RETURNING * INTO b;
    ELSIF p_op = 'resume' AND b.status = 'paused' THEN
        UPDATE batches SET status = CASE WHEN validated_at IS NULL THEN 'validating'
                                         WHEN started_at IS NULL THEN 'scheduled' ELSE 'running' END,
                           paused_at = NULL
         WHERE id = b.id RETURNING * INTO b;
        IF b.status IN ('scheduled', 'running') AND od_batch_finish_if_done(b.id) THEN
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

-- results.csv of a batch still validating: 409 batch_validating (its rows
-- are not there yet).
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
