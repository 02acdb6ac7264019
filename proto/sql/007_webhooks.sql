-- Webhooks (docs/webhooks.md): the project's endpoints, and one delivery
-- row per event and endpoint, written by triggers in the transaction of the
-- change that causes the event, so that no event is ever lost. The outcome
-- service leases due deliveries (od_webhook_claim), sends them, and records
-- each attempt (od_webhook_results).

CREATE TABLE webhook_endpoints (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    project_id        uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    url               text NOT NULL,
    description       text NOT NULL DEFAULT '',
    event_types       text[] NOT NULL,
    enabled           boolean NOT NULL DEFAULT true,
    disabled_reason   text,                       -- gone (410), failing (for days); NULL when enabled by hand
    failing_since     timestamptz,                -- first failure since the last success
    secret            text NOT NULL,              -- whsec_…: shown once, never in the audit log
    prev_secret       text,                       -- still signs until prev_secret_until (rotation)
    prev_secret_until timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_project ON webhook_endpoints (project_id, created_at);

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    call_id         uuid REFERENCES calls ON DELETE CASCADE, -- a call taken back by its own transaction takes its events
    event_id        text NOT NULL,                -- evt_…: one per event, whatever the endpoints and attempts
    event_type      text NOT NULL,
    payload         text NOT NULL,                -- the body, byte for byte as signed
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    -- pending: due at; while leased (lease_owner set) the lease's end
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    last_status_code integer,
    last_error      text,
    last_attempt_at timestamptz,
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending' AND lease_owner IS NOT NULL;
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_call ON webhook_deliveries (call_id) WHERE call_id IS NOT NULL;

-- Who changed an endpoint, in the audit log (the secrets are left out by od_audit_row).
CREATE TRIGGER webhook_endpoints_audit AFTER INSERT OR UPDATE OR DELETE ON webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION od_audit_row('webhook');

-- ---------------------------------------------------------------- events

CREATE OR REPLACE FUNCTION od_webhook_event(p_id text, p_type text, p_at timestamptz, p_data json) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT json_build_object('id', p_id, 'type', p_type, 'created_at', od_ts(p_at), 'data', p_data)::text
$$;

CREATE OR REPLACE FUNCTION od_webhook_event_id() RETURNS text
LANGUAGE sql VOLATILE AS $$
    SELECT 'evt_' || replace(gen_random_uuid()::text, '-', '')
$$;

-- call.queued: calls inserted as queued (the API, the console, batch rows).
CREATE OR REPLACE FUNCTION od_webhook_calls_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, call_id, event_id, event_type, payload)
    SELECT w.id, ev.id, ev.event_id, 'call.queued', od_webhook_event(ev.event_id, 'call.queued', ev.created_at, ev.data)
      FROM (SELECT c.id, c.project_id, c.created_at, od_webhook_event_id() AS event_id, od_call_json(c) AS data
              FROM new_rows c
             WHERE c.status = 'queued'
               AND EXISTS (SELECT 1 FROM webhook_endpoints w
                            WHERE w.project_id = c.project_id AND 'call.queued' = ANY (w.event_types))
             OFFSET 0) ev
      JOIN webhook_endpoints w ON w.project_id = ev.project_id AND 'call.queued' = ANY (w.event_types)
     ORDER BY ev.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER calls_webhooks AFTER INSERT ON calls REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION od_webhook_calls_inserted();

-- call.dialing / connected / completed / failed / canceled: the call's events.
-- The call as it is when the event is written (statements write the call
-- first, then its event).
CREATE OR REPLACE FUNCTION od_webhook_call_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, call_id, event_id, event_type, payload)
    SELECT w.id, ev.call_id, ev.event_id, ev.type, od_webhook_event(ev.event_id, ev.type, ev.at, ev.data)
      FROM (SELECT e.id AS ord, c.id AS call_id, c.project_id, e.at, 'call.' || e.status AS type,
                   od_webhook_event_id() AS event_id, od_call_json(c) AS data
              FROM new_rows e JOIN calls c ON c.id = e.call_id
             WHERE e.status IN ('dialing', 'connected', 'completed', 'failed', 'canceled')
               AND EXISTS (SELECT 1 FROM webhook_endpoints w
                            WHERE w.project_id = c.project_id AND 'call.' || e.status = ANY (w.event_types))
             OFFSET 0) ev
      JOIN webhook_endpoints w ON w.project_id = ev.project_id AND ev.type = ANY (w.event_types)
     ORDER BY ev.ord;
    RETURN NULL;
END
$$;
CREATE TRIGGER call_events_webhooks AFTER INSERT ON call_events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION od_webhook_call_events();

-- batch.completed (and whatever else is written to domain_events).
CREATE OR REPLACE FUNCTION od_webhook_domain_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload)
    SELECT w.id, ev.event_id, ev.type, od_webhook_event(ev.event_id, ev.type, ev.at, ev.data::json)
      FROM (SELECT d.id AS ord, d.project_id, d.type, d.at, d.data, od_webhook_event_id() AS event_id
              FROM new_rows d
             WHERE EXISTS (SELECT 1 FROM webhook_endpoints w
                            WHERE w.project_id = d.project_id AND d.type = ANY (w.event_types))
             OFFSET 0) ev
      JOIN webhook_endpoints w ON w.project_id = ev.project_id AND ev.type = ANY (w.event_types)
     ORDER BY ev.ord;
    RETURN NULL;
END
$$;
CREATE TRIGGER domain_events_webhooks AFTER INSERT ON domain_events REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION od_webhook_domain_events();

-- od_apply_events of 002, with each call's event written after its billing,
-- so that call.completed carries the call's cost.
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
        cost := 0;
        IF billed > 0 THEN
            SELECT ceil(billed * p.price_per_min_micros / 60.0)::bigint INTO cost
              FROM projects p JOIN calls k ON k.project_id = p.id WHERE k.id = (e->>'call_id')::uuid;
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
            cost_micros = CASE WHEN billed > 0 THEN cost ELSE cost_micros END,
            lease_until = CASE WHEN e->>'final_state' IS NOT NULL THEN NULL ELSE lease_until END
         WHERE id = (e->>'call_id')::uuid AND status = ANY ((e->>'allowed_from')::text[])
        RETURNING * INTO c;
        IF NOT FOUND THEN
            CONTINUE;
        END IF;
        applied := applied + 1;
        IF billed > 0 THEN
            UPDATE projects SET wallet_micros = wallet_micros - cost WHERE id = c.project_id;
            INSERT INTO wallet_ledger (project_id, call_id, amount_micros, reason)
            VALUES (c.project_id, c.id, -cost, 'call ' || billed || ' s');
        END IF;
        INSERT INTO call_events (call_id, status, at, detail)
        VALUES (c.id, c.status, at_, coalesce(c.final_state || CASE WHEN e->>'detail' IS NOT NULL
                                                                    THEN ': ' || (e->>'detail') ELSE '' END,
                                              e->>'detail'));
    END LOOP;
    RETURN applied;
END
$$;

-- ---------------------------------------------------------------- sending

-- Leases up to p_limit due deliveries to p_owner, at most p_per_endpoint in
-- flight per endpoint over every copy, the endpoints waiting longest first.
-- Claims run one at a time (an advisory lock; a copy that finds it taken
-- gets nothing and tries again at its next poll), so two copies never count
-- the same free room twice. The lease is next_attempt_at: a copy that dies
-- leaves its deliveries to be sent again after p_lease_s.
CREATE OR REPLACE FUNCTION od_webhook_claim(p_owner text, p_limit integer, p_per_endpoint integer,
                                            p_lease_s integer) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    out json;
BEGIN
    IF p_limit <= 0 OR NOT pg_try_advisory_xact_lock(hashtext('od_webhook_claim')) THEN
        RETURN '[]';
    END IF;
    WITH ep AS (
        SELECT w.*, due.at
          FROM webhook_endpoints w
          CROSS JOIN LATERAL (SELECT d.next_attempt_at AS at FROM webhook_deliveries d
                               -- due, or leased by a copy that did not answer in time (its lease ran out)
                               WHERE d.endpoint_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                               ORDER BY d.next_attempt_at LIMIT 1) due
         WHERE w.enabled
    ), pick AS (
        SELECT d.id, ep.url, ep.secret, CASE WHEN ep.prev_secret_until > now() THEN ep.prev_secret END AS prev_secret
          FROM ep
          CROSS JOIN LATERAL (SELECT count(*) AS n FROM webhook_deliveries b
                               WHERE b.endpoint_id = ep.id AND b.status = 'pending' AND b.lease_owner IS NOT NULL
                                 AND b.next_attempt_at > now()) busy
          CROSS JOIN LATERAL (SELECT d.id, d.next_attempt_at FROM webhook_deliveries d
                               WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                               ORDER BY d.next_attempt_at, d.id
                               LIMIT greatest(p_per_endpoint - busy.n, 0)) d
         ORDER BY ep.at, d.next_attempt_at
         LIMIT p_limit
    ), upd AS (
        UPDATE webhook_deliveries d
           SET lease_owner = p_owner, next_attempt_at = now() + make_interval(secs => p_lease_s)
          FROM pick WHERE d.id = pick.id
        RETURNING d.id, d.endpoint_id, d.event_id, d.payload, pick.url, pick.secret, pick.prev_secret
    )
    SELECT coalesce(json_agg(json_build_object('id', id, 'endpoint_id', endpoint_id, 'event_id', event_id,
                                               'url', url, 'secret', secret, 'prev_secret', prev_secret,
                                               'payload', payload)), '[]')
      INTO out FROM upd;
    RETURN out;
END
$$;

-- Records attempts. p_results: [{id, result: ok|retry|fail, code (HTTP status,
-- 0 for none), error}]. A retry waits p_schedule_s[attempts] (±20 %) while the
-- schedule lasts, then the delivery fails. A 410 disables its endpoint; so do
-- failures without a success for p_disable_after_s. Answers for deliveries no
-- longer leased to p_owner (their lease ran out and another copy took them)
-- are ignored. Returns the number recorded.
CREATE OR REPLACE FUNCTION od_webhook_results(p_owner text, p_results jsonb, p_schedule_s integer[],
                                              p_disable_after_s integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    n        integer;
    disabled jsonb;
    dis      jsonb;
BEGIN
    WITH r AS (
        SELECT * FROM jsonb_to_recordset(p_results) AS x(id uuid, result text, code integer, error text)
    ), upd AS (
        UPDATE webhook_deliveries d SET
            attempts = d.attempts + 1,
            status = CASE WHEN r.result = 'ok' THEN 'succeeded'
                          WHEN r.result = 'retry' AND d.attempts < coalesce(array_length(p_schedule_s, 1), 0)
                              THEN 'pending'
                          ELSE 'failed' END,
            next_attempt_at = CASE WHEN r.result = 'retry' AND d.attempts < coalesce(array_length(p_schedule_s, 1), 0)
                                   THEN now() + make_interval(secs => p_schedule_s[d.attempts + 1]
                                                                      * (0.8 + 0.4 * random()))
                                   ELSE now() END,
            lease_owner = NULL,
            last_status_code = nullif(r.code, 0),
            last_error = r.error,
            last_attempt_at = now(),
            delivered_at = CASE WHEN r.result = 'ok' THEN now() ELSE d.delivered_at END
          FROM r
         WHERE d.id = r.id AND d.lease_owner = p_owner AND d.status = 'pending'
        RETURNING d.endpoint_id, r.result, r.code
    ), ep AS (
        -- per endpoint: its failing_since from now on, and why it is disabled now (410, or failing too long)
        SELECT y.id, y.n, y.failing_since,
               CASE WHEN NOT y.enabled THEN NULL
                    WHEN y.gone THEN 'gone'
                    WHEN y.failing_since < now() - make_interval(secs => p_disable_after_s) THEN 'failing' END AS reason
          FROM (SELECT w.id, w.enabled, u.n, u.gone,
                       CASE WHEN u.ok THEN NULL ELSE coalesce(w.failing_since, now()) END AS failing_since
                  FROM (SELECT endpoint_id, count(*) AS n, bool_or(code = 410) AS gone, bool_or(result = 'ok') AS ok
                          FROM upd GROUP BY endpoint_id) u
                  JOIN webhook_endpoints w ON w.id = u.endpoint_id) y
    ), upd_ep AS (
        UPDATE webhook_endpoints w SET
            failing_since = ep.failing_since,
            enabled = w.enabled AND ep.reason IS NULL,
            disabled_reason = coalesce(ep.reason, w.disabled_reason),
            updated_at = CASE WHEN ep.reason IS NOT NULL THEN now() ELSE w.updated_at END
          FROM ep WHERE w.id = ep.id
           AND (ep.reason IS NOT NULL OR ep.failing_since IS DISTINCT FROM w.failing_since)
        RETURNING w.id, w.project_id, ep.reason, w.failing_since
    )
    SELECT (SELECT coalesce(sum(ep.n), 0) FROM ep),
           (SELECT jsonb_agg(to_jsonb(upd_ep)) FROM upd_ep WHERE reason IS NOT NULL)
      INTO n, disabled;

    -- the audit log says who disabled them (the update above ran without an actor: no second entry)
    IF disabled IS NOT NULL THEN
        PERFORM set_config('outdial.actor', '{"type": "system", "service": "outcome"}', true);
        FOR dis IN SELECT * FROM jsonb_array_elements(disabled) LOOP
            PERFORM od_audit((dis->>'project_id')::uuid, 'webhook.disabled', 'webhook', dis->>'id',
                             jsonb_build_object('enabled', jsonb_build_object('from', true, 'to', false),
                                                'disabled_reason', dis->>'reason',
                                                'failing_since', od_ts((dis->>'failing_since')::timestamptz)));
        END LOOP;
        PERFORM set_config('outdial.actor', '', true);
    END IF;
    RETURN n;
END
$$;

-- One round trip of a sender: records its answers (freeing their endpoints'
-- slots), then leases what may go out now.
CREATE OR REPLACE FUNCTION od_webhook_cycle(p_owner text, p_results jsonb, p_schedule_s integer[],
                                            p_disable_after_s integer, p_limit integer, p_per_endpoint integer,
                                            p_lease_s integer) RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_array_length(p_results) > 0 THEN
        PERFORM od_webhook_results(p_owner, p_results, p_schedule_s, p_disable_after_s);
    END IF;
    RETURN od_webhook_claim(p_owner, p_limit, p_per_endpoint, p_lease_s);
END
$$;

-- ---------------------------------------------------------------- the API

CREATE OR REPLACE FUNCTION od_webhook_json(w webhook_endpoints) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', w.id, 'url', w.url, 'description', w.description, 'event_types', w.event_types,
        'enabled', w.enabled, 'disabled_reason', w.disabled_reason, 'failing_since', od_ts(w.failing_since),
        'created_at', od_ts(w.created_at), 'updated_at', od_ts(w.updated_at))
$$;

CREATE OR REPLACE FUNCTION od_webhook_delivery_json(d webhook_deliveries) RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', d.id, 'event_id', d.event_id, 'event_type', d.event_type,
        'status', d.status,
        'attempts', d.attempts, 'last_status_code', d.last_status_code, 'last_error', d.last_error,
        'last_attempt_at', od_ts(d.last_attempt_at),
        -- while it is being sent: when the lease runs out
        'next_attempt_at', CASE WHEN d.status = 'pending' THEN od_ts(d.next_attempt_at) END,
        'delivered_at', od_ts(d.delivered_at), 'created_at', od_ts(d.created_at))
$$;

-- The endpoint with its secret (creation, rotation).
CREATE OR REPLACE FUNCTION od_webhook_json_secret(w webhook_endpoints) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT left(od_webhook_json(w)::text, -1) || ', "secret" : ' || to_json(w.secret)::text
           || CASE WHEN w.prev_secret_until IS NOT NULL
                   THEN ', "previous_secret_expires_at" : ' || to_json(od_ts(w.prev_secret_until))::text ELSE '' END
           || '}'
$$;

-- Ops: list, get, create {url, event_types, description, enabled, secret},
-- update {id, url?, event_types?, description?, enabled?}, delete {id},
-- rotate {id, secret}, deliveries {id, status?, limit?, cursor?},
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
        out := jsonb_build_object('status', 201, 'body', od_webhook_json_secret(w));
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
        out := jsonb_build_object('status', 200, 'body', od_webhook_json_secret(w));
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
