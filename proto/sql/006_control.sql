-- The project's controls (docs/control.md): the do-not-call list, verified
-- caller IDs, billing, and the audit log of every change made through the
-- API or outdialctl.

-- ---------------------------------------------------------------- audit log

-- Who is acting, for the audit triggers: the ingress sets it for each API
-- statement ({"type": "api_key", "key_id", "ip"}), outdialctl for its session
-- ({"type": "operator", "user", "host"}). Changes made by the services
-- themselves (dispatch, outcomes, wallet debits) set none and are not audited.
CREATE OR REPLACE FUNCTION od_actor() RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('outdial.actor', true), '')::jsonb
$$;

CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    project_id  uuid NOT NULL,                  -- no foreign key: the log outlives what it describes
    at          timestamptz NOT NULL DEFAULT now(),
    actor       jsonb NOT NULL,
    action      text NOT NULL,                  -- e.g. key.created, dnc.added, batch.paused
    object_type text NOT NULL,
    object_id   text,
    changes     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_project ON audit_log (project_id, id DESC);

-- Append-only: no row is ever changed or removed.
CREATE OR REPLACE FUNCTION od_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION od_audit_append_only();

CREATE OR REPLACE FUNCTION od_audit(p_project uuid, p_action text, p_type text, p_id text, p_changes jsonb)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO audit_log (project_id, actor, action, object_type, object_id, changes)
    SELECT p_project, od_actor(), p_action, p_type, p_id, coalesce(p_changes, '{}') WHERE od_actor() IS NOT NULL
$$;

-- Row changes of the audited tables. TG_ARGV[0]: the object type.
CREATE OR REPLACE FUNCTION od_audit_row() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    o   jsonb := CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END;
    n   jsonb := CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END;
    r   jsonb := coalesce(n, o);
    chg jsonb;
    act text;
BEGIN
    IF od_actor() IS NULL THEN
        RETURN NULL;
    END IF;
    -- never a secret in the log, nor the bulk of a batch
    o := o - ARRAY['key_hash', 'secret', 'prev_secret', 'header_line', 'row_errors', 'pace_tat'];
    n := n - ARRAY['key_hash', 'secret', 'prev_secret', 'header_line', 'row_errors', 'pace_tat'];
    IF TG_OP = 'UPDATE' THEN
        SELECT jsonb_object_agg(k, jsonb_build_object('from', o->k, 'to', n->k)) INTO chg
          FROM jsonb_object_keys(n) k WHERE o->k IS DISTINCT FROM n->k;
        IF chg IS NULL THEN
            RETURN NULL;
        END IF;
    ELSE
        chg := coalesce(n, o);
    END IF;
    act := TG_ARGV[0] || '.' || CASE
        WHEN TG_OP = 'INSERT' THEN 'created'
        WHEN TG_OP = 'DELETE' THEN 'deleted'
        WHEN TG_ARGV[0] = 'api_key' AND chg ? 'revoked_at' THEN 'revoked'
        WHEN TG_ARGV[0] = 'batch' AND chg ? 'status' THEN
             CASE n->>'status' WHEN 'paused' THEN 'paused' WHEN 'canceled' THEN 'canceled' ELSE 'resumed' END
        ELSE 'updated' END;
    PERFORM od_audit(CASE WHEN TG_TABLE_NAME = 'projects' THEN (r->>'id')::uuid ELSE (r->>'project_id')::uuid END,
                     act, TG_ARGV[0],
                     CASE TG_TABLE_NAME WHEN 'caller_ids' THEN r->>'phone' ELSE r->>'id' END, chg);
    RETURN NULL;
END
$$;
CREATE TRIGGER api_keys_audit AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION od_audit_row('api_key');
CREATE TRIGGER caller_ids_audit AFTER INSERT OR UPDATE OR DELETE ON caller_ids
    FOR EACH ROW EXECUTE FUNCTION od_audit_row('caller_id');
CREATE TRIGGER scenarios_audit AFTER INSERT OR UPDATE OR DELETE ON scenarios
    FOR EACH ROW EXECUTE FUNCTION od_audit_row('scenario');
-- the settings and the wallet (debits by the outcome service set no actor)
CREATE TRIGGER projects_audit AFTER INSERT OR UPDATE OR DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION od_audit_row('project');
-- a batch: created, paused, resumed, canceled by someone (dispatch and completion are not changes by anyone)
CREATE TRIGGER batches_audit_insert AFTER INSERT ON batches
    FOR EACH ROW EXECUTE FUNCTION od_audit_row('batch');
CREATE TRIGGER batches_audit_status AFTER UPDATE OF status ON batches
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       AND (NEW.status IN ('paused', 'canceled') OR OLD.status = 'paused'))
    EXECUTE FUNCTION od_audit_row('batch');

-- The DNC list changes by the thousand: one entry per statement and project,
-- with the count and the first 100 numbers.
CREATE OR REPLACE FUNCTION od_audit_dnc() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF od_actor() IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM od_audit(x.project_id, 'dnc.added', 'dnc', NULL,
                         jsonb_build_object('count', x.n, 'source', x.source, 'phones', to_jsonb(x.phones[1:100])))
           FROM (SELECT project_id, min(source) AS source, count(*) AS n, array_agg(phone ORDER BY phone) AS phones
                   FROM new_rows GROUP BY project_id) x;
    ELSE
        PERFORM od_audit(x.project_id, 'dnc.removed', 'dnc', NULL,
                         jsonb_build_object('count', x.n, 'phones', to_jsonb(x.phones[1:100])))
           FROM (SELECT project_id, count(*) AS n, array_agg(phone ORDER BY phone) AS phones
                   FROM old_rows GROUP BY project_id) x;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER dnc_audit_insert AFTER INSERT ON dnc REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION od_audit_dnc();
CREATE TRIGGER dnc_audit_delete AFTER DELETE ON dnc REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION od_audit_dnc();

-- ---------------------------------------------------------------- caller IDs

ALTER TABLE caller_ids ADD COLUMN verified_by text NOT NULL DEFAULT 'operator';

-- ---------------------------------------------------------------- billing

CREATE INDEX calls_project_ended ON calls (project_id, ended_at) WHERE ended_at IS NOT NULL;

-- ---------------------------------------------------------------- the API

-- The start of an API statement: a read commits without waiting for its WAL
-- flush (it changes only the rate-limit bucket: losing that on a crash is
-- harmless), then the key's request budget. Returns od_rate_take's answer,
-- with "answer" (the 429) when the request is refused.
CREATE OR REPLACE FUNCTION od_api_begin(p_key_id uuid, p_req_per_hour integer, p_read boolean) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl jsonb;
BEGIN
    IF p_read THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    rl := od_rate_take(p_key_id, NULL, p_req_per_hour, now());
    IF NOT (rl->>'ok')::boolean THEN
        RETURN rl || jsonb_build_object('answer', jsonb_build_object('status', 429, 'code', 'rate_limited', 'rl', rl));
    END IF;
    RETURN rl;
END
$$;

-- The control endpoints (docs/control.md): rate limit, then the operation,
-- as od_api. Ops: list_dnc, add_dnc, delete_dnc, list_caller_ids,
-- add_caller_id, billing, audit_log.
CREATE OR REPLACE FUNCTION od_control_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text,
                                          p_args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl    jsonb;
    out   jsonb;
    lim   integer := least(greatest(coalesce((p_args->>'limit')::integer, 50), 1), 200);
    v_from timestamptz;
    v_to   timestamptz;
    n_new integer;
BEGIN
    rl := od_api_begin(p_key_id, p_req_per_hour, p_op IN ('list_dnc', 'list_caller_ids', 'billing', 'audit_log'));
    IF NOT (rl->>'ok')::boolean THEN
        RETURN rl->'answer';
    END IF;
    CASE p_op
    WHEN 'list_dnc' THEN
        -- ?phone=: that number's entry or none; else the list in number order
        out := jsonb_build_object('status', 200, 'body', (
            WITH x AS (
                SELECT d.* FROM dnc d
                 WHERE d.project_id = p_project
                   AND (p_args->>'phone' IS NULL OR d.phone = p_args->>'phone')
                   AND (p_args->>'cursor' IS NULL OR d.phone > p_args->>'cursor')
                 ORDER BY d.phone LIMIT lim + 1
            ), pg AS (SELECT * FROM x ORDER BY phone LIMIT lim)
            SELECT json_build_object(
                'data', (SELECT coalesce(json_agg(json_build_object('phone', phone, 'source', source,
                                                                    'created_at', od_ts(created_at))
                                                  ORDER BY phone), '[]') FROM pg),
                'next_cursor', CASE WHEN (SELECT count(*) FROM x) > lim THEN (SELECT max(phone) FROM pg) END))::text);
    WHEN 'add_dnc' THEN
        WITH ins AS (
            INSERT INTO dnc (project_id, phone, source)
            SELECT DISTINCT p_project, e, coalesce(p_args->>'source', 'api')
              FROM jsonb_array_elements_text(p_args->'phones') e
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT count(*) INTO n_new FROM ins;
        out := jsonb_build_object('status', 200, 'body', json_build_object(
            'added', n_new,
            'already_listed', (SELECT count(DISTINCT e) FROM jsonb_array_elements_text(p_args->'phones') e) - n_new,
            'invalid', coalesce(p_args->'invalid', '[]'), 'invalid_count', coalesce((p_args->>'invalid_count')::int, 0)
        )::text);
    WHEN 'delete_dnc' THEN
        DELETE FROM dnc WHERE project_id = p_project AND phone = p_args->>'phone';
        out := CASE WHEN FOUND THEN jsonb_build_object('status', 204)
                    ELSE jsonb_build_object('status', 404, 'code', 'not_found') END;
    WHEN 'list_caller_ids' THEN
        out := jsonb_build_object('status', 200, 'body', json_build_object('data', (
            SELECT coalesce(json_agg(json_build_object('phone', ci.phone, 'verified_at', od_ts(ci.verified_at),
                                                       'verified_by', ci.verified_by, 'default', ci.i = 1)
                                     ORDER BY ci.i), '[]')
              FROM (SELECT c.*, row_number() OVER (ORDER BY c.verified_at, c.phone) AS i
                      FROM caller_ids c WHERE c.project_id = p_project) ci), 'next_cursor', NULL)::text);
    WHEN 'add_caller_id' THEN
        INSERT INTO caller_ids (project_id, phone, verified_by)
        VALUES (p_project, p_args->>'phone', 'api_key:' || p_key_id)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            out := jsonb_build_object('status', 409, 'code', 'caller_id_exists',
                                      'detail', 'this number is already one of the project''s caller IDs');
        ELSE
            out := jsonb_build_object('status', 201, 'body', (
                SELECT json_build_object('phone', ci.phone, 'verified_at', od_ts(ci.verified_at),
                                         'verified_by', ci.verified_by,
                                         'default', NOT EXISTS (SELECT 1 FROM caller_ids o
                                                                 WHERE o.project_id = p_project
                                                                   AND (o.verified_at, o.phone)
                                                                       < (ci.verified_at, ci.phone)))
                  FROM caller_ids ci WHERE ci.project_id = p_project AND ci.phone = p_args->>'phone')::text);
        END IF;
    WHEN 'billing' THEN
        v_from := coalesce((p_args->>'from')::timestamptz, '-infinity');
        v_to := coalesce((p_args->>'to')::timestamptz, 'infinity');
        out := jsonb_build_object('status', 200, 'body', (
            WITH s AS (
                SELECT c.final_state AS f, count(*) AS n, coalesce(sum(c.billed_s), 0) AS billed_s,
                       coalesce(sum(c.cost_micros), 0) AS cost
                  FROM calls c
                 WHERE c.project_id = p_project AND c.ended_at IS NOT NULL
                   AND c.ended_at >= v_from AND c.ended_at < v_to
                 GROUP BY c.final_state
            ), l AS (
                SELECT w.* FROM wallet_ledger w
                 WHERE w.project_id = p_project AND w.at >= v_from AND w.at < v_to
            )
            SELECT json_build_object(
                'from', od_ts(nullif(v_from, '-infinity')), 'to', od_ts(nullif(v_to, 'infinity')),
                'currency', p.currency,
                'final_states', (SELECT json_object_agg(f.f, json_build_object(
                                            'calls', coalesce(s.n, 0), 'billed_s', coalesce(s.billed_s, 0),
                                            'cost_micros', coalesce(s.cost, 0)) ORDER BY f.i)
                                   FROM unnest(ARRAY['completed','no_answer','busy','voicemail_detected',
                                                     'invalid_number','caller_id_unauthorized','provider_error',
                                                     'internal_error','canceled','dnc_blocked'])
                                        WITH ORDINALITY f(f, i)
                                   LEFT JOIN s ON s.f = f.f),
                'totals', (SELECT json_build_object('calls', coalesce(sum(n), 0), 'billed_s', coalesce(sum(billed_s), 0),
                                                    'cost_micros', coalesce(sum(cost), 0)) FROM s),
                'wallet', json_build_object('balance_micros', p.wallet_micros, 'currency', p.currency),
                'ledger', json_build_object(
                    'debits_micros', (SELECT coalesce(-sum(amount_micros), 0) FROM l WHERE amount_micros < 0),
                    'topups_micros', (SELECT coalesce(sum(amount_micros), 0) FROM l WHERE amount_micros > 0),
                    'entries', (SELECT coalesce(json_agg(json_build_object(
                                           'id', e.id, 'at', od_ts(e.at), 'amount_micros', e.amount_micros,
                                           'reason', e.reason, 'call_id', e.call_id) ORDER BY e.id DESC), '[]')
                                  FROM (SELECT * FROM l ORDER BY id DESC LIMIT 100) e),
                    'entries_total', (SELECT count(*) FROM l)))
              FROM projects p WHERE p.id = p_project)::text);
    WHEN 'audit_log' THEN
        out := jsonb_build_object('status', 200, 'body', (
            WITH x AS (
                SELECT a.* FROM audit_log a
                 WHERE a.project_id = p_project
                   AND (p_args->>'cursor' IS NULL OR a.id < (p_args->>'cursor')::bigint)
                   AND (p_args->>'action' IS NULL OR a.action = p_args->>'action')
                 ORDER BY a.id DESC LIMIT lim + 1
            ), pg AS (SELECT * FROM x ORDER BY id DESC LIMIT lim)
            SELECT json_build_object(
                'data', (SELECT coalesce(json_agg(json_build_object(
                                    'id', id::text, 'at', od_ts(at), 'actor', actor, 'action', action,
                                    'object_type', object_type, 'object_id', object_id, 'changes', changes)
                                  ORDER BY id DESC), '[]') FROM pg),
                'next_cursor', CASE WHEN (SELECT count(*) FROM x) > lim THEN (SELECT min(id)::text FROM pg) END))::text);
    ELSE
        RAISE EXCEPTION 'unknown operation %', p_op;
    END CASE;
    RETURN out || jsonb_build_object('rl', rl);
END
$$;
