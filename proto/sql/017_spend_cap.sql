-- Spend caps per batch (issue 7, docs/batches.md "Spend cap"): a batch may
-- set spend_cap_micros; once its calls' cost reaches it, the batch is paused
-- with pause_reason 'spend_cap' in the transaction that bills the call that
-- reached it, so its remaining calls are held (a paused batch's calls are
-- neither dispatched nor claimed). It overshoots by the calls already in
-- flight at most. It resumes only once the cap is raised or removed
-- (PATCH /v1/batches/{id}). The spend is a batch counter ("cost"), kept like
-- the others in the deltas ledger: no row that every outcome copy waits on.
--
-- Restated: od_batch_track (004's) adds the cost delta, od_call_ended (016's)
-- adds od_spend_cap, od_batch_create and od_batch_json (005's and 004's, with
-- 013's calling_windows and 014's retry policy) take and show the cap,
-- od_batch_control (005's) refuses to resume a batch still at its cap.

ALTER TABLE batches
    ADD COLUMN spend_cap_micros bigint CHECK (spend_cap_micros > 0),
    ADD COLUMN pause_reason text CHECK (pause_reason IN ('requested', 'spend_cap'));
-- a cost delta is a call's cost in micro-units: more than an integer holds at high prices
ALTER TABLE batch_deltas ALTER COLUMN n TYPE bigint;

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
    IF coalesce(NEW.cost_micros, 0) <> coalesce(OLD.cost_micros, 0) THEN
        INSERT INTO batch_deltas (batch_id, k, n)
        VALUES (NEW.batch_id, 'cost', coalesce(NEW.cost_micros, 0) - coalesce(OLD.cost_micros, 0));
    END IF;
    RETURN NULL;
END
$$;

-- The rule for od_call_ended: a billed call of a capped batch may bring it to its cap.
CREATE OR REPLACE FUNCTION od_spend_cap(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    b     batches;
    cnt   jsonb;
    spent bigint;
BEGIN
    IF c.batch_id IS NULL OR coalesce(c.cost_micros, 0) = 0 THEN
        RETURN '';
    END IF;
    SELECT * INTO b FROM batches WHERE id = c.batch_id;
    IF b.spend_cap_micros IS NULL OR b.status NOT IN ('scheduled', 'running') THEN
        RETURN '';
    END IF;
    cnt := od_batch_counters(b.id);
    spent := coalesce((cnt->>'cost')::bigint, 0);
    -- nothing left to hold: the batch completes as usual
    IF spent < b.spend_cap_micros OR coalesce((cnt->>'s:queued')::bigint, 0) = 0 THEN
        RETURN '';
    END IF;
    -- the audit log's batch.paused names the outcome service
    PERFORM set_config('outdial.actor', '{"type": "system", "service": "outcome"}', true);
    UPDATE batches SET status = 'paused', paused_at = now(), pause_reason = 'spend_cap'
     WHERE id = b.id AND status IN ('scheduled', 'running');
    PERFORM set_config('outdial.actor', '', true);
    RETURN format('; the batch reached its spend cap (%s of %s micro-units) and is paused', spent,
                  b.spend_cap_micros);
END
$$;

CREATE OR REPLACE FUNCTION od_call_ended(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN od_opt_out(c, e) || od_retry(c, e) || od_internal_error(c, e) || od_recording(c, e) || od_spend_cap(c, e);
END
$$;

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
    v_retry   boolean := coalesce(jsonb_typeof(p->'retry_on'), '') = 'array' OR p->>'retry_max_attempts' IS NOT NULL
                         OR p->>'retry_delay_s' IS NOT NULL;
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
    IF (p->>'spend_cap_micros')::bigint IS NOT NULL AND (p->>'spend_cap_micros')::bigint < 1 THEN
        RETURN jsonb_build_object('status', 422, 'code', 'invalid_spend_cap', 'field', 'spend_cap_micros',
                                  'detail', 'spend_cap_micros must be a whole number of micro-units of at least 1',
                                  'rl', rl);
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
                         created_at, import_owner, import_lease, calling_windows, spend_cap_micros,
                         retry_on, retry_max_attempts, retry_delay_s)
    VALUES ((p->>'id')::uuid, v_project, (p->>'key_id')::uuid, 'validating', p->>'scenario', v_pacing,
            coalesce((p->>'start_at')::timestamptz, now_), v_caller, p->>'file_name',
            ARRAY(SELECT jsonb_array_elements_text(p->'columns')), p->>'header_line', (p->>'total_rows')::integer,
            0, 0, '[]', now_, p->>'owner', now_ + od_batch_lease((p->>'total_rows')::integer),
            nullif(p->'calling_windows', 'null'::jsonb), (p->>'spend_cap_micros')::bigint,
            CASE WHEN v_retry THEN CASE WHEN jsonb_typeof(p->'retry_on') = 'array'
                                        THEN ARRAY(SELECT jsonb_array_elements_text(p->'retry_on'))
                                        ELSE proj.retry_on END END,
            CASE WHEN v_retry THEN coalesce((p->>'retry_max_attempts')::integer, proj.retry_max_attempts) END,
            CASE WHEN v_retry THEN coalesce((p->>'retry_delay_s')::integer, proj.retry_delay_s) END)
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

CREATE OR REPLACE FUNCTION od_batch_json(b batches, p_errors boolean) RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    c    jsonb := od_batch_counters(b.id);
    done bigint := coalesce((c->>'f:completed')::bigint, 0);
    o    json;
BEGIN
    o := json_build_object(
        'id', b.id, 'status', b.status, 'scenario', b.scenario, 'pacing_per_min', b.pacing_per_min,
        'start_at', od_ts(b.start_at), 'calling_windows', b.calling_windows, 'caller_id', b.caller_id,
        'spend_cap_micros', b.spend_cap_micros, 'spent_micros', coalesce((c->>'cost')::bigint, 0),
        'pause_reason', b.pause_reason,
        'retry', od_retry_json(b.retry_on, b.retry_max_attempts, b.retry_delay_s),
        'file_name', b.file_name, 'columns', b.columns,
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

CREATE OR REPLACE FUNCTION od_batch_control(p_project uuid, p_id uuid, p_op text) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    b     batches;
    spent bigint;
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
    spent := coalesce((od_batch_counters(b.id)->>'cost')::bigint, 0);
    IF p_op = 'resume' AND b.status = 'paused' AND b.spend_cap_micros IS NOT NULL AND spent >= b.spend_cap_micros THEN
        RETURN jsonb_build_object('status', 409, 'code', 'spend_cap_reached',
                                  'detail', format('the batch has spent %s of its %s micro-units cap: raise or '
                                                   'remove spend_cap_micros (PATCH /v1/batches/{id}) to resume it',
                                                   spent, b.spend_cap_micros));
    END IF;
    IF p_op = 'pause' AND b.status IN ('validating', 'scheduled', 'running') THEN
        UPDATE batches SET status = 'paused', paused_at = now(), pause_reason = 'requested'
         WHERE id = b.id RETURNING * INTO b;
    ELSIF p_op = 'resume' AND b.status = 'paused' THEN
        UPDATE batches SET status = CASE WHEN validated_at IS NULL THEN 'validating'
                                         WHEN started_at IS NULL THEN 'scheduled' ELSE 'running' END,
                           paused_at = NULL, pause_reason = NULL
         WHERE id = b.id RETURNING * INTO b;
        IF b.status IN ('scheduled', 'running') AND od_batch_finish_if_done(b.id) THEN
            SELECT * INTO b FROM batches WHERE id = b.id;
        END IF;
    ELSIF p_op = 'cancel' AND b.status <> 'canceled' THEN
        UPDATE batches SET status = 'canceled', canceled_at = now(), paused_at = NULL, pause_reason = NULL
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

-- PATCH /v1/batches/{id}: {"spend_cap_micros": n | null}. The audit log
-- records the change (batch.updated).
CREATE OR REPLACE FUNCTION od_batch_settings_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text,
                                                 p_args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl jsonb;
    b  batches;
BEGIN
    rl := od_api_begin(p_key_id, p_req_per_hour, false);
    IF NOT (rl->>'ok')::boolean THEN
        RETURN rl->'answer';
    END IF;
    IF p_op <> 'update' THEN
        RAISE EXCEPTION 'unknown operation %', p_op;
    END IF;
    UPDATE batches SET spend_cap_micros = (p_args->>'spend_cap_micros')::bigint
     WHERE id = (p_args->>'id')::uuid AND project_id = p_project
    RETURNING * INTO b;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 404, 'code', 'not_found', 'detail', 'no such batch in this project',
                                  'rl', rl);
    END IF;
    RETURN jsonb_build_object('status', 200, 'body', od_batch_json(b, true)::text, 'rl', rl);
END
$$;
CREATE TRIGGER batches_audit_spend_cap AFTER UPDATE OF spend_cap_micros ON batches
    FOR EACH ROW WHEN (OLD.spend_cap_micros IS DISTINCT FROM NEW.spend_cap_micros)
    EXECUTE FUNCTION od_audit_row('batch');
