-- 022: a project's active API keys are capped (issue 18: a tenant cannot
-- multiply its limits, or its load on authentication, by minting keys).
--
-- projects.max_api_keys (default 100) bounds the keys not revoked; the
-- operator raises it (outdialctl project set ID --max-api-keys N). A key
-- created over it, by the API or outdialctl, is refused with SQLSTATE
-- 23K01, which the ingress answers 422 too_many_api_keys. Concurrent
-- creations of one project are serialised by a transaction-scoped advisory
-- lock, not by the hot projects row.

ALTER TABLE projects ADD COLUMN max_api_keys integer NOT NULL DEFAULT 100 CHECK (max_api_keys >= 1);

CREATE FUNCTION od_api_keys_cap() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_max integer;
    v_n   integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('od_api_keys:' || NEW.project_id::text, 0));
    SELECT max_api_keys INTO v_max FROM projects WHERE id = NEW.project_id;
    SELECT count(*) INTO v_n FROM api_keys WHERE project_id = NEW.project_id AND revoked_at IS NULL;
    IF v_n >= v_max THEN
        RAISE EXCEPTION 'the project has % active API keys, its limit: revoke one first', v_n
            USING ERRCODE = '23K01';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER api_keys_cap BEFORE INSERT ON api_keys FOR EACH ROW EXECUTE FUNCTION od_api_keys_cap();
