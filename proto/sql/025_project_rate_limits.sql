-- 025: rate limits hold per project, not per API key (issue 18: a tenant
-- could multiply its limits by minting keys).
--
-- The GCRA buckets (rate_limits 'h:' hourly requests, 'c:' calls per
-- minute) are now the project's: every key of a project draws on them. The
-- project's limits (projects.requests_per_hour, calls_per_min; outdialctl
-- project set) bound the project's total, and so also each key's share: a
-- second key no longer doubles the budget. The RateLimit headers show the
-- project's remaining budget. The keys' old buckets are dropped (limiter
-- state only: every project starts with a full budget once).
--
-- Restated whole, as migrations do until issue 19 gives each function one
-- file: od_rate_take (002's) resolves the key's project; od_accept_calls
-- (003's) keys its buckets and its per-request numbering by project.

-- (od_rate_lock and od_rate_store take the owner of the buckets: now a project id.)
DELETE FROM rate_limits r
 WHERE EXISTS (SELECT 1 FROM api_keys k WHERE r.bucket IN ('h:' || k.id, 'c:' || k.id));

-- Rate-limit one request (every endpoint but POST /v1/calls, which decides
-- a whole group of requests in od_accept_calls), on its key's project's buckets.
CREATE OR REPLACE FUNCTION od_rate_take(p_key_id uuid, p_calls_per_min integer, p_req_per_hour integer,
                                        p_now timestamptz) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    v_project uuid;
    cur       record;
    d         record;
BEGIN
    SELECT project_id INTO v_project FROM api_keys WHERE id = p_key_id;
    v_project := coalesce(v_project, p_key_id); -- a key deleted meanwhile: its own bucket, as before
    cur := od_rate_lock(v_project);
    d := od_rate_decide(cur.h_tat, cur.c_tat, p_now, p_calls_per_min, p_req_per_hour);
    IF (d.rl->>'ok')::boolean THEN
        PERFORM od_rate_store(v_project, d.h_tat, d.c_tat);
    END IF;
    RETURN d.rl;
END
$$;

-- The accept path for a group of requests that arrived together: one
-- transaction, one round trip. Each element of p_reqs:
--   {key_id, project_id, calls_per_min, requests_per_hour, idem_key, request_hash,
--    call_id, scenario, phone, metadata, scheduled_for, caller_id}
-- Each result, in the order of the requests: {"r": accepted|replay|in_use|reused|
--   rate_limited|unknown_scenario|caller_id_not_verified|phone_on_dnc_list|
--   insufficient_funds, "status", "body", "rl"}; an accepted one also has the
--   call's "caller_id", "created_ms" and "due_ms" (the ingress writes its body).
-- Order per request: idempotency first (replays are never rate limited), then
-- the rate limits (a project's requests in the order they came), then the
-- project's rules. Only accepted requests are remembered under their
-- Idempotency-Key: a rejected request may be retried. A key repeated within
-- the group is a concurrent request: 409 (422 when the body differs).
CREATE OR REPLACE FUNCTION od_accept_calls(p_reqs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    now_    timestamptz := now();
    now_us  bigint := (extract(epoch FROM now()) * 1000000)::bigint;
    res     jsonb;
    lost    record;
    idem    idempotency_keys;
BEGIN
    -- the projects' buckets exist, and are locked in one order by every
    -- transaction (per project: hourly, then per-minute, as od_rate_lock does)
    INSERT INTO rate_limits (bucket, tat)
    SELECT b.bucket, '-infinity'
      FROM (SELECT DISTINCT x->>'project_id' AS k FROM jsonb_array_elements(p_reqs) x) k,
           LATERAL (VALUES ('h:' || k.k), ('c:' || k.k)) b(bucket)
     WHERE NOT EXISTS (SELECT 1 FROM rate_limits r WHERE r.bucket = b.bucket)
     ORDER BY 1
    ON CONFLICT DO NOTHING;
    PERFORM 1 FROM rate_limits r
     WHERE r.bucket IN (SELECT p || (x->>'project_id') FROM jsonb_array_elements(p_reqs) x, (VALUES ('h:'), ('c:')) v(p))
     ORDER BY substr(r.bucket, 3), r.bucket DESC
       FOR UPDATE;

    WITH req AS (
        SELECT r.*,
               r.idem_key IS NOT NULL
                 AND row_number() OVER (PARTITION BY r.project_id, r.idem_key ORDER BY r.ord) > 1 AS dup,
               first_value(r.request_hash) OVER (PARTITION BY r.project_id, r.idem_key ORDER BY r.ord) AS first_hash
          FROM ROWS FROM (jsonb_to_recordset(p_reqs) AS (key_id uuid, project_id uuid, calls_per_min integer,
                          requests_per_hour integer, idem_key text, request_hash text, call_id uuid, scenario text,
                          phone text, metadata jsonb, scheduled_for timestamptz, caller_id text))
               WITH ORDINALITY AS r(key_id, project_id, calls_per_min, requests_per_hour, idem_key, request_hash,
                                    call_id, scenario, phone, metadata, scheduled_for, caller_id, ord)
    ),
    -- idempotency first: a stored key, or a key repeated within the group
    pre AS (
        SELECT q.*,
               CASE WHEN i.key IS NOT NULL THEN od_idem_decide(i, q.request_hash, now_)
                    WHEN q.dup AND q.request_hash <> q.first_hash THEN '{"r":"reused"}'::jsonb
                    WHEN q.dup THEN '{"r":"in_use"}'::jsonb
               END AS early
          FROM req q
          LEFT JOIN idempotency_keys i ON i.project_id = q.project_id AND i.key = q.idem_key
    ),
    -- the new requests, numbered per project in arrival order
    fresh AS (
        SELECT p.*, row_number() OVER (PARTITION BY p.project_id ORDER BY p.ord) - 1 AS j
          FROM pre p WHERE p.early IS NULL
    ),
    -- each project's two buckets: how many of its requests they allow
    bk AS (
        SELECT k.project_id, k.cpm, k.rph, least(k.cnt, gh.n, gc.n) AS a,
               gh.cur0 AS h0, gh.t AS ht, gh.tau AS htau, gh.n AS hn,
               gc.cur0 AS c0, gc.t AS ct, gc.tau AS ctau, gc.n AS cn
          FROM (SELECT f.project_id, max(f.calls_per_min) AS cpm, max(f.requests_per_hour) AS rph, count(*) AS cnt
                  FROM fresh f GROUP BY f.project_id) k
          JOIN rate_limits h ON h.bucket = 'h:' || k.project_id
          JOIN rate_limits c ON c.bucket = 'c:' || k.project_id
         CROSS JOIN LATERAL od_gcra_run(h.tat, now_, k.rph, 3600) gh
         CROSS JOIN LATERAL od_gcra_run(c.tat, now_, k.cpm, 60) gc
    ),
    upd_rl AS (
        UPDATE rate_limits r
           SET tat = to_timestamp((CASE WHEN r.bucket LIKE 'h:%' THEN bk.h0 + bk.a * bk.ht
                                        ELSE bk.c0 + bk.a * bk.ct END) / 1000000.0)
          FROM bk
         WHERE bk.a > 0 AND r.bucket IN ('h:' || bk.project_id, 'c:' || bk.project_id)
    ),
    -- the rate limits' answer per request (the RateLimit headers), then the project's rules
    dec AS (
        SELECT f.*,
               CASE WHEN f.j >= bk.a THEN
                        CASE WHEN bk.a >= bk.cn
                             THEN jsonb_build_object('ok', false, 'policy', 'calls', 'limit', bk.cpm, 'window', 60,
                                      'remaining', 0,
                                      'retry_after_ms', ceil((bk.c0 + bk.a * bk.ct - bk.ctau - now_us) / 1000.0)::bigint,
                                      'reset', ceil((bk.c0 + bk.a * bk.ct - now_us) / 1000000.0)::bigint)
                             ELSE jsonb_build_object('ok', false, 'policy', 'requests', 'limit', bk.rph, 'window', 3600,
                                      'remaining', 0,
                                      'retry_after_ms', ceil((bk.h0 + bk.a * bk.ht - bk.htau - now_us) / 1000.0)::bigint,
                                      'reset', ceil((bk.h0 + bk.a * bk.ht - now_us) / 1000000.0)::bigint)
                        END
                    WHEN bk.cn <= bk.hn
                        THEN jsonb_build_object('ok', true, 'policy', 'calls', 'limit', bk.cpm, 'window', 60,
                                 'remaining', greatest(0, bk.cn - f.j - 1),
                                 'reset', ceil((bk.c0 + (f.j + 1) * bk.ct - now_us) / 1000000.0)::bigint)
                    ELSE jsonb_build_object('ok', true, 'policy', 'requests', 'limit', bk.rph, 'window', 3600,
                             'remaining', greatest(0, bk.hn - f.j - 1),
                             'reset', ceil((bk.h0 + (f.j + 1) * bk.ht - now_us) / 1000000.0)::bigint)
               END AS rl,
               CASE WHEN f.j >= bk.a THEN 'rate_limited'
                    WHEN p.id IS NULL OR NOT EXISTS (SELECT 1 FROM scenarios s
                                                      WHERE s.project_id = p.id AND s.idn = f.scenario)
                        THEN 'unknown_scenario'
                    WHEN f.caller_id IS NOT NULL AND ci.phone IS NULL THEN 'caller_id_not_verified'
                    WHEN EXISTS (SELECT 1 FROM dnc d WHERE d.project_id = p.id AND d.phone = f.phone)
                        THEN 'phone_on_dnc_list'
                    WHEN p.wallet_micros <= 0 THEN 'insufficient_funds'
                    ELSE 'accepted'
               END AS r,
               ci.phone AS caller
          FROM fresh f
          JOIN bk ON bk.project_id = f.project_id
          LEFT JOIN projects p ON p.id = f.project_id
          LEFT JOIN LATERAL (
                SELECT c.phone FROM caller_ids c
                 WHERE c.project_id = f.project_id AND (f.caller_id IS NULL OR c.phone = f.caller_id)
                 ORDER BY c.verified_at, c.phone LIMIT 1) ci ON true
    ),
    ins AS (
        INSERT INTO calls (id, project_id, api_key_id, scenario, phone, metadata, caller_id, scheduled_for, due_at,
                           created_at)
        SELECT d.call_id, d.project_id, d.key_id, d.scenario, d.phone, coalesce(d.metadata, '{}'::jsonb), d.caller,
               d.scheduled_for, greatest(coalesce(d.scheduled_for, now_), now_), now_
          FROM dec d WHERE d.r = 'accepted'
        RETURNING id, caller_id, floor(extract(epoch FROM due_at) * 1000)::bigint AS due_ms
    ),
    -- a concurrent transaction that stored the key first wins (see below)
    ins_idem AS (
        INSERT INTO idempotency_keys (project_id, key, request_hash, state, status_code, response, call_id)
        SELECT d.project_id, d.idem_key, d.request_hash, 'in_flight', 202, NULL, a.id
          FROM dec d JOIN ins a ON a.id = d.call_id
         WHERE d.idem_key IS NOT NULL
         ORDER BY d.project_id, d.idem_key
        ON CONFLICT DO NOTHING
        RETURNING call_id
    )
    SELECT jsonb_agg(
             CASE WHEN pr.early IS NOT NULL THEN pr.early
                  WHEN d.r <> 'accepted' THEN jsonb_build_object('r', d.r, 'rl', d.rl)
                  WHEN d.idem_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ins_idem w WHERE w.call_id = d.call_id)
                      THEN jsonb_build_object('r', 'lost', 'call_id', d.call_id, 'project_id', d.project_id,
                                              'idem_key', d.idem_key, 'request_hash', d.request_hash)
                  ELSE jsonb_build_object('r', 'accepted', 'rl', d.rl, 'caller_id', a.caller_id,
                                          'created_ms', now_us / 1000, 'due_ms', a.due_ms)
             END ORDER BY pr.ord)
      INTO res
      FROM pre pr
      LEFT JOIN dec d ON d.ord = pr.ord
      LEFT JOIN ins a ON a.id = d.call_id;

    -- rare: another transaction stored one of these Idempotency-Keys first.
    -- Its call stands; this one is taken back and the request answered as a
    -- retry of it.
    IF res @> '[{"r":"lost"}]' THEN
        FOR lost IN SELECT x.value AS v, x.ordinality - 1 AS i
                      FROM jsonb_array_elements(res) WITH ORDINALITY x WHERE x.value->>'r' = 'lost' LOOP
            DELETE FROM calls WHERE id = (lost.v->>'call_id')::uuid;
            SELECT * INTO idem FROM idempotency_keys
             WHERE project_id = (lost.v->>'project_id')::uuid AND key = lost.v->>'idem_key';
            res := jsonb_set(res, ARRAY[lost.i::text], od_idem_decide(idem, lost.v->>'request_hash', now_));
        END LOOP;
    END IF;
    RETURN coalesce(res, '[]'::jsonb);
END
$$;
