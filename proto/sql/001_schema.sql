-- outdial schema, version 1: projects, keys, calls and their events,
-- idempotency records and rate-limit buckets.
-- Times are timestamptz (UTC on the wire); money is bigint micro-units.

CREATE TABLE projects (
    id                   uuid PRIMARY KEY,
    name                 text NOT NULL,
    pacing_per_min       integer NOT NULL DEFAULT 5 CHECK (pacing_per_min > 0),
    calls_per_min        integer NOT NULL DEFAULT 60 CHECK (calls_per_min > 0),
    requests_per_hour    integer NOT NULL DEFAULT 1000 CHECK (requests_per_hour > 0),
    wallet_micros        bigint NOT NULL DEFAULT 0,
    price_per_min_micros bigint NOT NULL DEFAULT 100000 CHECK (price_per_min_micros >= 0),
    currency             text NOT NULL DEFAULT 'USD',
    created_at           timestamptz NOT NULL DEFAULT now()
);

-- Pacing state apart from the project row, so that dispatching never waits
-- for a wallet debit holding the project row (and the other way round).
CREATE TABLE project_pacing (
    project_id uuid PRIMARY KEY REFERENCES projects ON DELETE CASCADE,
    pace_tat   timestamptz NOT NULL           -- GCRA state: the next dispatch is allowed at
);

CREATE TABLE scenarios (
    project_id  uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    idn         text NOT NULL CHECK (idn ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    disclosure  text NOT NULL DEFAULT 'This call is from an AI receptionist.',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, idn)
);

CREATE TABLE caller_ids (
    project_id  uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    phone       text NOT NULL CHECK (phone ~ '^\+[1-9][0-9]{7,14}$'),
    verified_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, phone)
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    project_id   uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    name         text NOT NULL DEFAULT '',
    scopes       text[] NOT NULL,
    key_hash     text NOT NULL UNIQUE,         -- hex SHA-256 of the key; the key itself is never stored
    key_prefix   text NOT NULL,                -- first characters, to recognise a key in lists
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE INDEX api_keys_project ON api_keys (project_id, created_at);

CREATE TABLE dnc (
    project_id uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    phone      text NOT NULL,
    source     text NOT NULL DEFAULT 'api',
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, phone)
);

CREATE TABLE calls (
    id             uuid PRIMARY KEY,            -- UUIDv7: id order is creation order (cursor pagination)
    project_id     uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    api_key_id     uuid,
    scenario       text NOT NULL,
    phone          text NOT NULL,
    metadata       jsonb NOT NULL DEFAULT '{}',
    caller_id      text,
    batch_id       uuid,
    scheduled_for  timestamptz,
    due_at         timestamptz NOT NULL,
    status         text NOT NULL DEFAULT 'queued'
                   CHECK (status IN ('queued','dialing','connected','completed','failed','canceled')),
    final_state    text CHECK (final_state IN ('completed','no_answer','busy','voicemail_detected',
                   'invalid_number','caller_id_unauthorized','provider_error','internal_error','canceled','dnc_blocked')),
    outcome        text CHECK (outcome IN ('success','middle','spam')),
    goal_completed boolean,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz,                 -- ingress saw Kafka's delivery report
    dispatched_at  timestamptz,                 -- scheduler's compare-and-set before publishing to dispatch
    dialed_at      timestamptz,                 -- dialer's claim (compare-and-set queued -> dialing)
    connected_at   timestamptz,
    ended_at       timestamptz,
    duration_ms    bigint,
    billed_s       integer,
    cost_micros    bigint NOT NULL DEFAULT 0,
    dialer_id      text,
    claim_token    uuid,                        -- the claiming attempt (a lost answer is retried with it)
    lease_until    timestamptz,                 -- the claiming dialer renews it; the reaper ends expired calls
    CHECK ((status IN ('completed','failed','canceled')) = (final_state IS NOT NULL))
);
CREATE INDEX calls_project_id ON calls (project_id, id DESC);
CREATE INDEX calls_queued_due ON calls (project_id, due_at) WHERE status = 'queued';
CREATE INDEX calls_leased ON calls (lease_until) WHERE status IN ('dialing','connected');
CREATE INDEX calls_batch ON calls (batch_id, id) WHERE batch_id IS NOT NULL;
CREATE INDEX calls_project_phone ON calls (project_id, phone, id DESC);

CREATE TABLE call_events (
    id      bigserial PRIMARY KEY,
    call_id uuid NOT NULL REFERENCES calls ON DELETE CASCADE,
    status  text NOT NULL,
    at      timestamptz NOT NULL,
    detail  text
);
CREATE INDEX call_events_call ON call_events (call_id, id);

CREATE TABLE idempotency_keys (
    project_id   uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    key          text NOT NULL,
    request_hash text NOT NULL,
    state        text NOT NULL CHECK (state IN ('in_flight','done')),
    status_code  integer NOT NULL,
    response     text NOT NULL,
    call_id      uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE rate_limits (
    bucket text PRIMARY KEY,
    tat    timestamptz NOT NULL
);

CREATE TABLE wallet_ledger (
    id            bigserial PRIMARY KEY,
    project_id    uuid NOT NULL REFERENCES projects ON DELETE CASCADE,
    call_id       uuid,
    amount_micros bigint NOT NULL,              -- negative: a debit
    reason        text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX wallet_ledger_project ON wallet_ledger (project_id, at);
