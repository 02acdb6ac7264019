-- Call recordings (issue 7, docs/recordings.md). The conversation engine (or
-- the provider) reports a recording with the call's end: a URL or an object
-- key in the customer's storage, its duration and its SHA-256. The dialer
-- carries it in the final call.event; od_apply_events hands the event to
-- od_call_ended, whose rule od_recording stores it in the transaction that
-- writes the final state (so the final webhook already shows it).
--
-- The call object shows the recording's metadata only (kind, duration,
-- checksum, when stored, when deleted), never the URL or key: lists and
-- webhooks must not hand out access. The URL or key is read one call at a
-- time at GET /v1/calls/{id}/recording (od_recording_api), which writes
-- recording.accessed to the audit log with the API key as actor.
--
-- Each project keeps its recordings recording_retention_days (operator
-- setting, default 90; 0: deleted at the next expiry run); the outcome
-- service's chore od_recordings_expire then marks them deleted, erases the
-- URL or key and writes recording.deleted to the audit log. The object in
-- the customer's storage is not touched: outdial only forgets where it is.
--
-- Restated here: od_call_ended (015's, plus od_recording), od_call_json
-- (014's, plus "recording") and od_project_json (014's, plus
-- recording_retention_days).

ALTER TABLE projects ADD COLUMN recording_retention_days integer NOT NULL DEFAULT 90
    CHECK (recording_retention_days BETWEEN 0 AND 36500);

CREATE TABLE recordings (
    call_id     uuid PRIMARY KEY REFERENCES calls ON DELETE CASCADE,
    project_id  uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('url', 'object_key')),
    url         text CHECK (octet_length(url) BETWEEN 1 AND 2048),         -- NULL once deleted
    object_key  text CHECK (octet_length(object_key) BETWEEN 1 AND 2048),  -- NULL once deleted
    duration_ms bigint NOT NULL CHECK (duration_ms >= 0),
    sha256      text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CONSTRAINT recordings_ref CHECK (CASE WHEN deleted_at IS NOT NULL THEN url IS NULL AND object_key IS NULL
                                          WHEN kind = 'url' THEN url IS NOT NULL AND object_key IS NULL
                                          ELSE object_key IS NOT NULL AND url IS NULL END)
);
-- the expiry: per project, its live recordings oldest first
CREATE INDEX recordings_live ON recordings (project_id, created_at) WHERE deleted_at IS NULL;

-- The rule for od_call_ended: store the recording the final event carries.
-- The outcome service took it from a dialer that checked it (libs/call
-- od_call_recording_parse); what still does not fit is left out here rather
-- than failing the event, whose final state matters more.
CREATE OR REPLACE FUNCTION od_recording(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    r   jsonb := e->'recording';
    ref text := coalesce(r->>'url', r->>'object_key');
BEGIN
    IF r IS NULL OR jsonb_typeof(r) <> 'object' THEN
        RETURN '';
    END IF;
    IF (r ? 'url') = (r ? 'object_key') OR octet_length(ref) NOT BETWEEN 1 AND 2048
       OR jsonb_typeof(r->'duration_ms') IS DISTINCT FROM 'number' OR (r->>'duration_ms') !~ '^[0-9]{1,15}$'
       OR lower(r->>'sha256') !~ '^[0-9a-f]{64}$' THEN
        RAISE WARNING 'call %: recording left out, it does not fit: %', c.id, left(r::text, 200);
        RETURN '';
    END IF;
    INSERT INTO recordings (call_id, project_id, kind, url, object_key, duration_ms, sha256)
    VALUES (c.id, c.project_id, CASE WHEN r ? 'url' THEN 'url' ELSE 'object_key' END, r->>'url', r->>'object_key',
            (r->>'duration_ms')::bigint, lower(r->>'sha256'))
    ON CONFLICT (call_id) DO NOTHING;
    RETURN '';
END
$$;

CREATE OR REPLACE FUNCTION od_call_ended(c calls, e jsonb) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    RETURN od_opt_out(c, e) || od_retry(c, e) || od_internal_error(c, e) || od_recording(c, e);
END
$$;

-- The recording as the call object shows it: metadata only (null: none).
-- Only an ended call can have one, so queued calls (call.queued webhooks,
-- batch imports) skip the lookup.
CREATE OR REPLACE FUNCTION od_call_recording_json(c calls) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN c.ended_at IS NOT NULL THEN (
        SELECT json_build_object('kind', r.kind, 'duration_s', round(r.duration_ms / 1000.0, 3), 'sha256', r.sha256,
                                 'created_at', od_ts(r.created_at), 'deleted_at', od_ts(r.deleted_at))
          FROM recordings r WHERE r.call_id = c.id)
    END
$$;

-- The call object (013's), restated: its recording too (API, lists, webhooks).
-- services/ingress/ingress.c call_body writes the same members for the 202.
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
        'calling_window', od_call_window_json(c),
        'recording', od_call_recording_json(c))
$$;

-- GET /v1/calls/{id}/recording (scope sessions:read): where the recording
-- is, and an audit entry recording.accessed naming the API key (the
-- statement's actor). The URL or key itself is not written to the log: a
-- signed URL is a credential. 404 not_found: no such call, or no recording;
-- 410 recording_deleted: expired.
CREATE OR REPLACE FUNCTION od_recording_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text,
                                            p_args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl   jsonb;
    r    recordings;
    days integer;
BEGIN
    IF p_op <> 'get_recording' THEN  -- the only operation
        RAISE EXCEPTION 'unknown operation %', p_op;
    END IF;
    rl := od_api_begin(p_key_id, p_req_per_hour, false);  -- not a mere read: it writes the audit log
    IF NOT (rl->>'ok')::boolean THEN
        RETURN rl->'answer';
    END IF;
    SELECT * INTO r FROM recordings WHERE call_id = (p_args->>'id')::uuid AND project_id = p_project;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('status', 404, 'code', 'not_found', 'rl', rl, 'detail', CASE
                   WHEN EXISTS (SELECT 1 FROM calls WHERE id = (p_args->>'id')::uuid AND project_id = p_project)
                   THEN 'this call has no recording' ELSE 'no such call in this project' END);
    END IF;
    IF r.deleted_at IS NOT NULL THEN
        RETURN jsonb_build_object('status', 410, 'code', 'recording_deleted', 'rl', rl,
                                  'detail', 'the recording was deleted at ' || od_ts(r.deleted_at)
                                            || ', after the project''s retention period');
    END IF;
    SELECT recording_retention_days INTO days FROM projects WHERE id = p_project;
    PERFORM od_audit(p_project, 'recording.accessed', 'recording', r.call_id::text,
                     jsonb_build_object('kind', r.kind));
    RETURN jsonb_build_object('status', 200, 'rl', rl, 'body', json_build_object(
        'call_id', r.call_id, 'kind', r.kind, 'url', r.url, 'object_key', r.object_key,
        'duration_s', round(r.duration_ms / 1000.0, 3), 'sha256', r.sha256, 'created_at', od_ts(r.created_at),
        'expires_at', od_ts(r.created_at + make_interval(days => days)))::text);
END
$$;

-- GET /v1/project (014's od_project_json), restated: the recording retention.
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
               'created_at', od_ts(p.created_at))
$$;

-- The expiry chore of the outcome service: up to p_limit recordings past
-- their project's retention are marked deleted and their URL or key erased,
-- each with an audit entry recording.deleted by the outcome service. Two
-- copies running at once do not delete one twice (the update re-checks
-- deleted_at after waiting for the other's lock). Returns how many.
CREATE OR REPLACE FUNCTION od_recordings_expire(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM set_config('outdial.actor', '{"type": "system", "service": "outcome"}', true);
    WITH due AS (
        SELECT x.call_id, p.recording_retention_days AS days
          FROM projects p
         CROSS JOIN LATERAL (
               SELECT r.call_id FROM recordings r
                WHERE r.project_id = p.id AND r.deleted_at IS NULL
                  AND r.created_at < now() - make_interval(days => p.recording_retention_days)
                ORDER BY r.created_at
                LIMIT p_limit) x
         LIMIT p_limit),
    del AS (
        UPDATE recordings r SET deleted_at = now(), url = NULL, object_key = NULL
          FROM due WHERE r.call_id = due.call_id AND r.deleted_at IS NULL
        RETURNING r.call_id, r.project_id, r.kind, r.created_at, due.days)
    SELECT count(*) INTO n
      FROM (SELECT od_audit(d.project_id, 'recording.deleted', 'recording', d.call_id::text,
                            jsonb_build_object('kind', d.kind, 'created_at', od_ts(d.created_at),
                                               'retention_days', d.days, 'reason', 'retention period over'))
              FROM del d) a;  -- od_audit is volatile: run for every row, though its void is not used
    PERFORM set_config('outdial.actor', '', true);
    RETURN n;
END
$$;
