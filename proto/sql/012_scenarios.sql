-- Scenarios as compliance objects (issue 7, docs/control.md "Scenarios"):
-- each carries its AI-disclosure wording (on unless explicitly turned off,
-- with a reason, which the audit log records as scenario.disclosure_disabled)
-- and its opt-out script. Both are handed to the conversation engine with
-- every session and recorded on the call when it is claimed, so a call shows
-- what its callee was told even after the scenario changes.

ALTER TABLE scenarios
    ADD COLUMN disclosure_enabled boolean NOT NULL DEFAULT true,
    ADD COLUMN disclosure_off_reason text,
    ADD COLUMN opt_out_script text NOT NULL
        DEFAULT 'If you would rather not get these calls, say so and we will not call this number again.',
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT scenarios_disclosure_off_reason CHECK (disclosure_enabled OR disclosure_off_reason IS NOT NULL);
ALTER TABLE scenarios ALTER COLUMN disclosure SET DEFAULT 'This call is from an AI receptionist.';

-- What the call's callee was told, written by od_claim (NULL until claimed).
ALTER TABLE calls
    ADD COLUMN disclosure text,          -- NULL once claimed: the scenario's disclosure was off
    ADD COLUMN opt_out_script text;

-- The audit trigger (006's), restated: the object id column is the trigger's
-- second argument (scenarios are named by idn, caller IDs by phone; 006
-- logged a scenario with no id), and turning a scenario's disclosure off or
-- on again is an action of its own.
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
    o := o - ARRAY['key_hash', 'secret', 'prev_secret', 'header_line', 'row_errors', 'pace_tat', 'updated_at'];
    n := n - ARRAY['key_hash', 'secret', 'prev_secret', 'header_line', 'row_errors', 'pace_tat', 'updated_at'];
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
        WHEN TG_ARGV[0] = 'scenario' AND chg ? 'disclosure_enabled' THEN
             CASE WHEN (n->>'disclosure_enabled')::boolean THEN 'disclosure_enabled' ELSE 'disclosure_disabled' END
        ELSE 'updated' END;
    PERFORM od_audit(CASE WHEN TG_TABLE_NAME = 'projects' THEN (r->>'id')::uuid ELSE (r->>'project_id')::uuid END,
                     act, TG_ARGV[0], r->>coalesce(TG_ARGV[1], 'id'), chg);
    RETURN NULL;
END
$$;
DROP TRIGGER caller_ids_audit ON caller_ids;
CREATE TRIGGER caller_ids_audit AFTER INSERT OR UPDATE OR DELETE ON caller_ids
    FOR EACH ROW EXECUTE FUNCTION od_audit_row('caller_id', 'phone');
DROP TRIGGER scenarios_audit ON scenarios;
CREATE TRIGGER scenarios_audit AFTER INSERT OR UPDATE OR DELETE ON scenarios
    FOR EACH ROW EXECUTE FUNCTION od_audit_row('scenario', 'idn');

CREATE OR REPLACE FUNCTION od_scenario_json(s scenarios) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object('idn', s.idn, 'disclosure', s.disclosure, 'disclosure_enabled', s.disclosure_enabled,
                             'disclosure_off_reason', s.disclosure_off_reason, 'opt_out_script', s.opt_out_script,
                             'created_at', od_ts(s.created_at), 'updated_at', od_ts(s.updated_at))
$$;

-- GET/POST/PATCH /v1/scenarios. p_args: the fields the ingress checked
-- (idn, disclosure, disclosure_enabled, disclosure_off_reason, opt_out_script).
CREATE OR REPLACE FUNCTION od_scenario_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text,
                                           p_args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl  jsonb;
    out jsonb;
    s   scenarios;
    on_ boolean;
BEGIN
    rl := od_api_begin(p_key_id, p_req_per_hour, p_op IN ('list', 'get'));
    IF NOT (rl->>'ok')::boolean THEN
        RETURN rl->'answer';
    END IF;
    IF p_op IN ('get', 'update') THEN
        SELECT * INTO s FROM scenarios WHERE project_id = p_project AND idn = p_args->>'idn' FOR UPDATE;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 404, 'code', 'not_found', 'detail', 'no such scenario in this project',
                                      'rl', rl);
        END IF;
    END IF;
    IF p_op IN ('create', 'update') THEN
        on_ := coalesce((p_args->>'disclosure_enabled')::boolean, s.disclosure_enabled, true);
        IF NOT on_ AND coalesce(p_args->>'disclosure_off_reason', s.disclosure_off_reason) IS NULL THEN
            RETURN jsonb_build_object('status', 422, 'code', 'disclosure_off_reason_required',
                                      'field', 'disclosure_off_reason',
                                      'detail', 'turning the AI disclosure off needs a disclosure_off_reason',
                                      'rl', rl);
        END IF;
    END IF;
    CASE p_op
    WHEN 'list' THEN
        out := jsonb_build_object('status', 200, 'body', json_build_object(
            'data', (SELECT coalesce(json_agg(od_scenario_json(x) ORDER BY x.idn), '[]')
                       FROM scenarios x WHERE x.project_id = p_project),
            'next_cursor', NULL)::text);
    WHEN 'get' THEN
        out := jsonb_build_object('status', 200, 'body', od_scenario_json(s)::text);
    WHEN 'create' THEN
        INSERT INTO scenarios (project_id, idn, disclosure, disclosure_enabled, disclosure_off_reason, opt_out_script)
        VALUES (p_project, p_args->>'idn',
                coalesce(p_args->>'disclosure', 'This call is from an AI receptionist.'), on_,
                CASE WHEN NOT on_ THEN p_args->>'disclosure_off_reason' END,
                coalesce(p_args->>'opt_out_script',
                         'If you would rather not get these calls, say so and we will not call this number again.'))
        ON CONFLICT DO NOTHING
        RETURNING * INTO s;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 409, 'code', 'scenario_exists', 'field', 'idn',
                                      'detail', 'the project already has a scenario with this idn', 'rl', rl);
        END IF;
        out := jsonb_build_object('status', 201, 'body', od_scenario_json(s)::text);
    WHEN 'update' THEN
        UPDATE scenarios SET
            disclosure = coalesce(p_args->>'disclosure', disclosure),
            disclosure_enabled = on_,
            disclosure_off_reason = CASE WHEN on_ THEN NULL
                                         ELSE coalesce(p_args->>'disclosure_off_reason', disclosure_off_reason) END,
            opt_out_script = coalesce(p_args->>'opt_out_script', opt_out_script),
            updated_at = now()
         WHERE project_id = p_project AND idn = s.idn
        RETURNING * INTO s;
        out := jsonb_build_object('status', 200, 'body', od_scenario_json(s)::text);
    ELSE
        RAISE EXCEPTION 'unknown operation %', p_op;
    END CASE;
    RETURN out || jsonb_build_object('rl', rl);
END
$$;

-- The dialer's claim (004's), restated: the scenario's disclosure and
-- opt-out script are recorded on the call as it is claimed, and handed to
-- the dialer (for the conversation engine's session).
CREATE OR REPLACE FUNCTION od_claim(p_id uuid, p_dialer text, p_lease_s integer, p_token uuid) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    c calls;
BEGIN
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
        SELECT * INTO c FROM calls WHERE id = p_id AND claim_token = p_token AND status = 'dialing';
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

-- The call object (002's), restated: what the callee was told, once claimed.
-- Still a single SELECT, so PostgreSQL inlines it.
CREATE OR REPLACE FUNCTION od_call_json(c calls) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', c.id, 'status', c.status, 'final_state', c.final_state, 'outcome', c.outcome,
        'goal_completed', c.goal_completed, 'scenario', c.scenario, 'phone', c.phone,
        'metadata', c.metadata, 'scheduled_for', od_ts(c.scheduled_for), 'caller_id', c.caller_id,
        'batch_id', c.batch_id, 'created_at', od_ts(c.created_at), 'dialed_at', od_ts(c.dialed_at),
        'connected_at', od_ts(c.connected_at), 'ended_at', od_ts(c.ended_at),
        'duration_s', round(c.duration_ms / 1000.0, 3), 'billed_s', c.billed_s,
        'cost_micros', c.cost_micros,
        'compliance', CASE WHEN c.opt_out_script IS NOT NULL THEN json_build_object(
                               'disclosure_enabled', c.disclosure IS NOT NULL, 'disclosure', c.disclosure,
                               'opt_out_script', c.opt_out_script) END)
$$;
