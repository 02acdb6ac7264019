-- 023: webhook limits a multi-tenant API needs (issue 18); 024 encrypts the
-- secrets.
--
-- 1. Sending slots shared fairly between projects. od_webhook_claim leased
--    the endpoints waiting longest first, at most p_per_endpoint in flight
--    per endpoint: a project with many slow endpoints (up to 20, 8 requests
--    each: 160 of a copy's 256 slots; two such projects, all of them) held
--    the slots, and the other projects' deliveries waited for its timeouts. Now a project has at most p_per_project
--    deliveries in flight over every copy (OUTDIAL_WEBHOOK_PER_PROJECT), and
--    the free slots go round-robin, least in flight first: every project's
--    first delivery (counting those it has in flight) before any project's
--    next one; inside a project, round-robin between its endpoints.
--    od_webhook_cycle takes the new p_per_project; its old signature stays for
--    copies of outdial-outcome not yet upgraded during a rolling upgrade,
--    which record their answers and lease nothing more.
-- 2. Deliveries are written only for enabled endpoints (the three triggers):
--    a disabled endpoint's events were piling up as pending rows that no one
--    would ever send. Delivered and failed rows are deleted after a retention
--    (od_webhook_expire; OUTDIAL_WEBHOOK_RETENTION_DAYS of outdial-outcome).
--
-- (Functions are restated whole, as the migrations before this one do;
-- issue 19 moves every function to one file of its own.)

-- the retention's batches: the oldest finished rows first, by one index probe
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (created_at) WHERE status <> 'pending';

-- ---------------------------------------------------------------- events: enabled endpoints only

CREATE OR REPLACE FUNCTION od_webhook_calls_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, call_id, event_id, event_type, payload)
    SELECT w.id, ev.id, ev.event_id, 'call.queued', od_webhook_event(ev.event_id, 'call.queued', ev.created_at, ev.data)
      FROM (SELECT c.id, c.project_id, c.created_at, od_webhook_event_id() AS event_id, od_call_json(c) AS data
              FROM new_rows c
             WHERE c.status = 'queued'
               AND EXISTS (SELECT 1 FROM webhook_endpoints w
                            WHERE w.enabled AND w.project_id = c.project_id AND 'call.queued' = ANY (w.event_types))
             OFFSET 0) ev
      JOIN webhook_endpoints w ON w.enabled AND w.project_id = ev.project_id AND 'call.queued' = ANY (w.event_types)
     ORDER BY ev.id;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION od_webhook_call_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_deliveries (endpoint_id, call_id, event_id, event_type, payload)
    SELECT w.id, ev.call_id, ev.event_id, ev.type, od_webhook_event(ev.event_id, ev.type, ev.at, ev.data)
      FROM (SELECT e.id AS ord, c.id AS call_id, c.project_id, e.at, 'call.' || e.status AS type,
                   od_webhook_event_id() AS event_id, od_call_json(c) AS data
              FROM new_rows e JOIN calls c ON c.id = e.call_id
             WHERE e.status IN ('dialing', 'connected', 'completed', 'failed', 'canceled')
               AND EXISTS (SELECT 1 FROM webhook_endpoints w
                            WHERE w.enabled AND w.project_id = c.project_id AND 'call.' || e.status = ANY (w.event_types))
             OFFSET 0) ev
      JOIN webhook_endpoints w ON w.enabled AND w.project_id = ev.project_id AND ev.type = ANY (w.event_types)
     ORDER BY ev.ord;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION od_webhook_domain_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload)
    SELECT w.id, ev.event_id, ev.type, od_webhook_event(ev.event_id, ev.type, ev.at, ev.data::json)
      FROM (SELECT d.id AS ord, d.project_id, d.type, d.at, d.data, od_webhook_event_id() AS event_id
              FROM new_rows d
             WHERE EXISTS (SELECT 1 FROM webhook_endpoints w
                            WHERE w.enabled AND w.project_id = d.project_id AND d.type = ANY (w.event_types))
             OFFSET 0) ev
      JOIN webhook_endpoints w ON w.enabled AND w.project_id = ev.project_id AND ev.type = ANY (w.event_types)
     ORDER BY ev.ord;
    RETURN NULL;
END
$$;


-- ---------------------------------------------------------------- sending

DROP FUNCTION od_webhook_claim(text, integer, integer, integer);

-- Leases up to p_limit due deliveries to p_owner: at most p_per_endpoint in
-- flight per endpoint and p_per_project per project, over every copy
-- (leased and the lease not run out). Fair order: each candidate gets its
-- rank in its project (round-robin over the project's endpoints, the one
-- waiting longest first), plus what the project has in flight; the lowest
-- go first, ties to the delivery waiting longest. So a project with a
-- backlog of slow deliveries gets no more than its cap and no earlier turn
-- than a project with nothing in flight.
-- Claims run one at a time (an advisory lock; a copy that finds it taken
-- gets nothing and tries again at its next poll), so two copies never count
-- the same free room twice. The lease is next_attempt_at: a copy that dies
-- leaves its deliveries to be sent again after p_lease_s. Locks the leased
-- delivery rows only (the UPDATE).
CREATE FUNCTION od_webhook_claim(p_owner text, p_limit integer, p_per_endpoint integer, p_per_project integer,
                                 p_lease_s integer) RETURNS json
LANGUAGE plpgsql AS $$
DECLARE
    out json;
BEGIN
    IF p_limit <= 0 OR NOT pg_try_advisory_xact_lock(hashtext('od_webhook_claim')) THEN
        RETURN '[]';
    END IF;
    WITH busy AS (
        SELECT b.endpoint_id, count(*) AS n FROM webhook_deliveries b
         WHERE b.status = 'pending' AND b.lease_owner IS NOT NULL AND b.next_attempt_at > now()
         GROUP BY b.endpoint_id
    ), pbusy AS (
        SELECT w.project_id, sum(busy.n) AS n FROM busy JOIN webhook_endpoints w ON w.id = busy.endpoint_id
         GROUP BY w.project_id
    ), ep AS (
        SELECT w.id, w.project_id, w.url, w.secret,
               CASE WHEN w.prev_secret_until > now() THEN w.prev_secret END AS prev_secret,
               due.at, coalesce(busy.n, 0) AS ep_busy, coalesce(pbusy.n, 0) AS p_busy
          FROM webhook_endpoints w
          CROSS JOIN LATERAL (SELECT d.next_attempt_at AS at FROM webhook_deliveries d
                               -- due, or leased by a copy that did not answer in time (its lease ran out)
                               WHERE d.endpoint_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                               ORDER BY d.next_attempt_at LIMIT 1) due
          LEFT JOIN busy ON busy.endpoint_id = w.id
          LEFT JOIN pbusy ON pbusy.project_id = w.project_id
         WHERE w.enabled AND coalesce(pbusy.n, 0) < p_per_project
    ), cand AS (
        SELECT d.id, ep.url, ep.secret, ep.prev_secret, ep.at, d.next_attempt_at, ep.p_busy,
               row_number() OVER (PARTITION BY ep.project_id ORDER BY d.k, ep.at, ep.id) AS rank
          FROM ep
          CROSS JOIN LATERAL (SELECT d.id, d.next_attempt_at,
                                     row_number() OVER (ORDER BY d.next_attempt_at, d.id) AS k
                                FROM webhook_deliveries d
                               WHERE d.endpoint_id = ep.id AND d.status = 'pending' AND d.next_attempt_at <= now()
                               ORDER BY d.next_attempt_at, d.id
                               LIMIT greatest(least(p_per_endpoint - ep.ep_busy, p_per_project - ep.p_busy,
                                                    p_limit), 0)) d
    ), pick AS (
        SELECT cand.* FROM cand
         WHERE cand.rank <= p_per_project - cand.p_busy
         ORDER BY cand.rank + cand.p_busy, cand.at, cand.next_attempt_at, cand.id
         LIMIT p_limit
    ), upd AS (
        UPDATE webhook_deliveries d
           SET lease_owner = p_owner, next_attempt_at = now() + make_interval(secs => p_lease_s)
          FROM pick WHERE d.id = pick.id
        RETURNING d.id, d.endpoint_id, d.event_id, d.payload, d.attempts, pick.url, pick.secret, pick.prev_secret
    )
    SELECT coalesce(json_agg(json_build_object('id', id, 'endpoint_id', endpoint_id, 'event_id', event_id,
                                               'url', url, 'secret', secret, 'prev_secret', prev_secret,
                                               'payload', payload, 'attempts', attempts)), '[]')
      INTO out FROM upd;
    RETURN out;
END
$$;

-- One round trip of a sender: records its answers (freeing their slots),
-- then leases what may go out now. Each leased delivery carries the attempts
-- recorded before this one (019): the UPDATE's RETURNING reads them from the
-- row it leased, so the snapshot question of 019 does not arise.
CREATE FUNCTION od_webhook_cycle(p_owner text, p_results jsonb, p_schedule_s integer[], p_disable_after_s integer,
                                 p_limit integer, p_per_endpoint integer, p_per_project integer,
                                 p_lease_s integer) RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_array_length(p_results) > 0 THEN
        PERFORM od_webhook_results(p_owner, p_results, p_schedule_s, p_disable_after_s);
    END IF;
    RETURN od_webhook_claim(p_owner, p_limit, p_per_endpoint, p_per_project, p_lease_s);
END
$$;

-- The signature before 023, for a copy not yet upgraded during a rolling
-- upgrade: it records the answers it still collects, and leases nothing. Such
-- a copy cannot open the secrets 024 stores encrypted (it would send with an
-- empty signature, which receivers refuse, and the delivery would fail), and
-- it knows no project cap; the upgraded copies send everything.
CREATE OR REPLACE FUNCTION od_webhook_cycle(p_owner text, p_results jsonb, p_schedule_s integer[],
                                            p_disable_after_s integer, p_limit integer, p_per_endpoint integer,
                                            p_lease_s integer) RETURNS json
LANGUAGE plpgsql AS $$
BEGIN
    IF jsonb_array_length(p_results) > 0 THEN
        PERFORM od_webhook_results(p_owner, p_results, p_schedule_s, p_disable_after_s);
    END IF;
    RETURN '[]';
END
$$;

-- ---------------------------------------------------------------- retention

-- Deletes up to p_limit deliveries that are no longer pending (succeeded or
-- failed) and were created more than p_days days ago, oldest first; returns
-- how many. Rows another statement holds are skipped, so copies of
-- outdial-outcome running it at once do not wait on each other.
CREATE FUNCTION od_webhook_expire(p_days integer, p_limit integer) RETURNS integer
LANGUAGE sql AS $$
    WITH old AS (
        SELECT id FROM webhook_deliveries
         WHERE status <> 'pending' AND created_at < now() - make_interval(days => p_days)
         ORDER BY created_at LIMIT p_limit FOR UPDATE SKIP LOCKED
    ), gone AS (
        DELETE FROM webhook_deliveries d USING old WHERE d.id = old.id RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;
