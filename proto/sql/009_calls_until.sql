-- GET /v1/calls?until=: the console's time filter is a range, [since, until).
-- The same listing as 002's, with one more bound.
CREATE OR REPLACE FUNCTION od_list_calls(p_project uuid, a jsonb) RETURNS json
LANGUAGE plpgsql STABLE AS $$
DECLARE
    lim  integer := coalesce((a->>'limit')::integer, 50);
    page calls[];
BEGIN
    SELECT coalesce(array_agg(x ORDER BY x.id DESC), '{}') INTO page FROM (
        SELECT * FROM calls c
         WHERE c.project_id = p_project
           AND (a->>'status' IS NULL OR c.status = a->>'status')
           AND (a->>'final_state' IS NULL OR c.final_state = a->>'final_state')
           AND (a->>'batch_id' IS NULL OR c.batch_id = (a->>'batch_id')::uuid)
           AND (a->>'phone' IS NULL OR c.phone = a->>'phone')
           AND (a->>'since' IS NULL OR c.created_at >= (a->>'since')::timestamptz)
           AND (a->>'until' IS NULL OR c.created_at < (a->>'until')::timestamptz)
           AND (a->>'cursor' IS NULL OR c.id < (a->>'cursor')::uuid)
         ORDER BY c.id DESC
         LIMIT lim + 1) x;
    RETURN json_build_object(
        'data', (SELECT coalesce(json_agg(od_call_json(c) ORDER BY c.id DESC), '[]')
                   FROM unnest(page[1:lim]) AS c),
        'next_cursor', CASE WHEN cardinality(page) > lim THEN page[lim].id END);
END
$$;
