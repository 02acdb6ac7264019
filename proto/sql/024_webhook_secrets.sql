-- 024: webhook secrets encrypted at rest (issue 18; docs/webhooks.md,
-- "Secrets at rest").
--
-- webhook_endpoints.secret and prev_secret hold what the ingress sealed with
-- OUTDIAL_SECRET_KEY (odenc1:<key id>:<base64>), or, in rows written before
-- this migration, the plain whsec_ value until `outdialctl migrate` with the
-- key seals them (the outcome service opens both forms). The database never
-- sees the key: od_webhook_api stores args.secret (sealed) and answers
-- args.secret_shown (the plain secret, shown once).
--
-- (od_webhook_api is restated whole, as the migrations before this one do;
-- issue 19 moves every function to one file of its own.)

DROP FUNCTION od_webhook_json_secret(webhook_endpoints);

-- The endpoint with its secret as the client sees it (creation, rotation):
-- p_shown, the plain secret; the row holds it sealed. A caller that passes
-- no p_shown (an ingress older than 024) shows the row's value.
CREATE FUNCTION od_webhook_json_secret(w webhook_endpoints, p_shown text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT left(od_webhook_json(w)::text, -1) || ', "secret" : ' || to_json(coalesce(p_shown, w.secret))::text
           || CASE WHEN w.prev_secret_until IS NOT NULL
                   THEN ', "previous_secret_expires_at" : ' || to_json(od_ts(w.prev_secret_until))::text ELSE '' END
           || '}'
$$;

-- Ops: list, get, create {url, event_types, description, enabled, secret
-- (stored: sealed), secret_shown (answered)}, update {id, url?,
-- event_types?, description?, enabled?}, delete {id}, rotate {id, secret,
-- secret_shown}, deliveries {id, status?, limit?, cursor?},
-- retry {id, delivery_id}.
CREATE OR REPLACE FUNCTION od_webhook_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text,
                                          p_args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl  jsonb;
    out jsonb;
    w   webhook_endpoints;
    d   webhook_deliveries;
    lim integer := least(greatest(coalesce((p_args->>'limit')::integer, 50), 1), 200);
    cur webhook_deliveries;
BEGIN
    rl := od_api_begin(p_key_id, p_req_per_hour, p_op IN ('list', 'get', 'deliveries'));
    IF NOT (rl->>'ok')::boolean THEN
        RETURN rl->'answer';
    END IF;
    IF p_op NOT IN ('list', 'create') THEN
        SELECT * INTO w FROM webhook_endpoints WHERE id = (p_args->>'id')::uuid AND project_id = p_project
           FOR UPDATE;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 404, 'code', 'not_found', 'detail', 'no such webhook in this project',
                                      'rl', rl);
        END IF;
    END IF;
    CASE p_op
    WHEN 'list' THEN
        out := jsonb_build_object('status', 200, 'body', json_build_object(
            'data', (SELECT coalesce(json_agg(od_webhook_json(x) ORDER BY x.created_at, x.id), '[]')
                       FROM webhook_endpoints x WHERE x.project_id = p_project),
            'next_cursor', NULL)::text);
    WHEN 'get' THEN
        out := jsonb_build_object('status', 200, 'body', od_webhook_json(w)::text);
    WHEN 'create' THEN
        -- one at a time per project, so that the limit holds
        PERFORM 1 FROM projects WHERE id = p_project FOR UPDATE;
        IF (SELECT count(*) FROM webhook_endpoints WHERE project_id = p_project) >= 20 THEN
            RETURN jsonb_build_object('status', 422, 'code', 'webhook_limit_reached',
                                      'detail', 'a project has at most 20 webhook endpoints', 'rl', rl);
        END IF;
        INSERT INTO webhook_endpoints (project_id, url, description, event_types, enabled, secret)
        VALUES (p_project, p_args->>'url', coalesce(p_args->>'description', ''),
                ARRAY(SELECT jsonb_array_elements_text(p_args->'event_types')),
                coalesce((p_args->>'enabled')::boolean, true), p_args->>'secret')
        RETURNING * INTO w;
        out := jsonb_build_object('status', 201, 'body', od_webhook_json_secret(w, p_args->>'secret_shown'));
    WHEN 'update' THEN
        UPDATE webhook_endpoints SET
            url = coalesce(p_args->>'url', url),
            description = coalesce(p_args->>'description', description),
            event_types = CASE WHEN p_args ? 'event_types'
                               THEN ARRAY(SELECT jsonb_array_elements_text(p_args->'event_types'))
                               ELSE event_types END,
            enabled = coalesce((p_args->>'enabled')::boolean, enabled),
            -- enabled again by hand: a fresh start
            disabled_reason = CASE WHEN (p_args->>'enabled')::boolean THEN NULL ELSE disabled_reason END,
            failing_since = CASE WHEN (p_args->>'enabled')::boolean AND NOT enabled THEN NULL ELSE failing_since END,
            updated_at = now()
         WHERE id = w.id
        RETURNING * INTO w;
        out := jsonb_build_object('status', 200, 'body', od_webhook_json(w)::text);
    WHEN 'delete' THEN
        DELETE FROM webhook_endpoints WHERE id = w.id;
        out := jsonb_build_object('status', 204);
    WHEN 'rotate' THEN
        UPDATE webhook_endpoints SET prev_secret = secret, prev_secret_until = now() + interval '24 hours',
                                     secret = p_args->>'secret', updated_at = now()
         WHERE id = w.id
        RETURNING * INTO w;
        out := jsonb_build_object('status', 200, 'body', od_webhook_json_secret(w, p_args->>'secret_shown'));
    WHEN 'deliveries' THEN
        IF p_args->>'cursor' IS NOT NULL THEN
            SELECT * INTO cur FROM webhook_deliveries
             WHERE id = (p_args->>'cursor')::uuid AND endpoint_id = w.id;
            IF NOT FOUND THEN
                RETURN jsonb_build_object('status', 400, 'code', 'invalid_parameter',
                                          'detail', 'cursor must be a next_cursor of this list', 'rl', rl);
            END IF;
        END IF;
        out := jsonb_build_object('status', 200, 'body', (
            WITH x AS (
                SELECT * FROM webhook_deliveries x
                 WHERE x.endpoint_id = w.id
                   AND (cur.id IS NULL OR (x.created_at, x.id) < (cur.created_at, cur.id))
                   AND (p_args->>'status' IS NULL OR x.status = p_args->>'status')
                 ORDER BY x.created_at DESC, x.id DESC LIMIT lim + 1
            ), pg AS (SELECT * FROM x ORDER BY created_at DESC, id DESC LIMIT lim)
            SELECT json_build_object(
                'data', (SELECT coalesce(json_agg(od_webhook_delivery_json(pg) ORDER BY created_at DESC, id DESC), '[]')
                           FROM pg),
                'next_cursor', CASE WHEN (SELECT count(*) FROM x) > lim
                                    THEN (SELECT id FROM pg ORDER BY created_at, id LIMIT 1) END))::text);
    WHEN 'retry' THEN
        SELECT * INTO d FROM webhook_deliveries
         WHERE id = (p_args->>'delivery_id')::uuid AND endpoint_id = w.id FOR UPDATE;
        IF NOT FOUND THEN
            RETURN jsonb_build_object('status', 404, 'code', 'not_found', 'detail', 'no such delivery of this webhook',
                                      'rl', rl);
        END IF;
        IF d.status = 'pending' AND d.lease_owner IS NOT NULL AND d.next_attempt_at > now() THEN
            RETURN jsonb_build_object('status', 409, 'code', 'delivery_in_flight',
                                      'detail', 'the delivery is being sent right now', 'rl', rl);
        END IF;
        UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(), lease_owner = NULL
         WHERE id = d.id
        RETURNING * INTO d;
        PERFORM od_audit(p_project, 'webhook.delivery_retried', 'webhook', w.id::text,
                         jsonb_build_object('delivery_id', d.id, 'event_id', d.event_id));
        out := jsonb_build_object('status', 202, 'body', od_webhook_delivery_json(d)::text);
    ELSE
        RAISE EXCEPTION 'unknown operation %', p_op;
    END CASE;
    RETURN out || jsonb_build_object('rl', rl);
END
$$;
