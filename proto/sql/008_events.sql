-- GET /v1/events (docs/events.md): the call events of a project as they
-- happen, resumable without gaps.
--
-- Event ids (call_events.id) are taken when a row is inserted, not when its
-- transaction commits, so "every id above the last one read" can miss a row
-- committed late. Each row therefore records its transaction id; a reader
-- takes only rows of transactions older than every transaction still running
-- (pg_snapshot_xmin), which can gain no new rows, in (xid, id) order. A
-- cursor (xid, id) then never passes a row that is still to come.

ALTER TABLE call_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX call_events_xid ON call_events (xid, id);

-- The rows after (p_xid, p_id) of the projects p_projects, oldest first, at
-- most p_limit: {"events": [[xid, id, project_id, event JSON], ...], "next":
-- [xid, id]}. "next" is the cursor to read on from: the last row's, or, when
-- no more rows are ready, the horizon (everything before it is read).
CREATE OR REPLACE FUNCTION od_events_since(p_xid xid8, p_id bigint, p_projects uuid[], p_limit integer)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
    horizon xid8 := pg_snapshot_xmin(pg_current_snapshot());
    rows_   jsonb;
    n       integer;
BEGIN
    SELECT coalesce(jsonb_agg(jsonb_build_array(x.xid::text, x.id, x.project_id, x.ev) ORDER BY x.xid, x.id), '[]'),
           count(*)
      INTO rows_, n
      FROM (SELECT e.xid, e.id, c.project_id,
                   jsonb_build_object('call_id', c.id, 'status', e.status, 'at', od_ts(e.at), 'detail', e.detail,
                                      'phone', c.phone, 'scenario', c.scenario, 'batch_id', c.batch_id,
                                      'final_state', CASE WHEN e.status IN ('completed', 'failed', 'canceled')
                                                          THEN c.final_state END,
                                      'outcome', CASE WHEN e.status = 'completed' THEN c.outcome END,
                                      'dialed_at', od_ts(c.dialed_at), 'connected_at', od_ts(c.connected_at)) AS ev
              FROM call_events e JOIN calls c ON c.id = e.call_id
             WHERE (e.xid, e.id) > (p_xid, p_id) AND e.xid < horizon AND c.project_id = ANY (p_projects)
             ORDER BY e.xid, e.id
             LIMIT p_limit) x;
    RETURN jsonb_build_object('events', rows_, 'next',
        CASE WHEN n = p_limit THEN jsonb_build_array(rows_->(n - 1)->>0, (rows_->(n - 1)->>1)::bigint)
             WHEN horizon > p_xid THEN jsonb_build_array(horizon::text, 0)
             ELSE jsonb_build_array(p_xid::text, p_id) END);
END
$$;

-- Opening a stream: one request of the key's budget, and the cursor "now".
CREATE OR REPLACE FUNCTION od_events_api(p_key_id uuid, p_project uuid, p_req_per_hour integer, p_op text,
                                         p_args jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    rl jsonb;
BEGIN
    rl := od_api_begin(p_key_id, p_req_per_hour, true);
    IF NOT (rl->>'ok')::boolean THEN
        RETURN rl->'answer';
    END IF;
    IF p_op <> 'open_events' THEN
        RAISE EXCEPTION 'unknown operation %', p_op;
    END IF;
    RETURN jsonb_build_object('status', 200, 'rl', rl,
                              'head', jsonb_build_array(pg_snapshot_xmin(pg_current_snapshot())::text, 0));
END
$$;
