-- Schema for Neural Fabric Scheduler (atom-fabric's PostgreSQL state store).
--
-- The original tables nf_jobs and nf_nodes are kept by name and extended; the other tables are
-- new. Applied by `atom migrate --dsn ...` and by every replica on start, once, recorded in
-- schema_migrations (the runner holds an advisory lock so concurrent starts do not race).
--
-- Tenant-scoped tables (nf_jobs, nf_placements, nf_reservations, nf_quotas, nf_events) have
-- row-level security, FORCEd so that even the owner is subject to it unless it is a superuser:
-- the application role atom_app (NOSUPERUSER, NOBYPASSRLS, not the owner) only ever sees the
-- rows of the tenant set with `SET LOCAL app.tenant_id`. Cross-tenant state the scheduler needs
-- (free capacity of nodes, cohort usage, replica leases) lives in tables without tenant rows,
-- and the two cross-tenant queue operations are SECURITY DEFINER functions.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'atom_app') THEN
        CREATE ROLE atom_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

-- Nodes: the spec, and the allocation counters every replica claims capacity from.
CREATE TABLE IF NOT EXISTS nf_nodes (
    id TEXT PRIMARY KEY,
    gpus INT,
    status TEXT,
    last_seen TIMESTAMP DEFAULT NOW()
);
ALTER TABLE nf_nodes
    ADD COLUMN IF NOT EXISTS spec JSONB NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN IF NOT EXISTS spec_version BIGINT NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS cpu_milli BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS memory_mib BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS tpus INT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS cpu_used BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS mem_used BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS tpu_used INT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS gpu_used INT[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS cached_models TEXT[] NOT NULL DEFAULT '{}',
    ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS registered_seq BIGSERIAL;
-- The database itself refuses an over-committed node (a second line of defence).
ALTER TABLE nf_nodes DROP CONSTRAINT IF EXISTS nf_nodes_capacity;
ALTER TABLE nf_nodes ADD CONSTRAINT nf_nodes_capacity CHECK (
    cpu_used BETWEEN 0 AND cpu_milli
    AND mem_used BETWEEN 0 AND memory_mib
    AND tpu_used BETWEEN 0 AND tpus
    AND cardinality(gpu_used) = gpus
    AND 0 <= ALL (gpu_used) AND 1000 >= ALL (gpu_used)
);
ALTER TABLE nf_nodes DROP CONSTRAINT IF EXISTS nf_nodes_status;
ALTER TABLE nf_nodes ADD CONSTRAINT nf_nodes_status
    CHECK (status IN ('healthy', 'draining', 'unhealthy'));

-- Jobs (schedule requests).
CREATE SEQUENCE IF NOT EXISTS nf_job_seq;
CREATE TABLE IF NOT EXISTS nf_jobs (
    id TEXT PRIMARY KEY,
    tenant_id TEXT,
    model_id TEXT,
    version TEXT,
    resources JSON,
    status TEXT,
    created_at TIMESTAMP DEFAULT NOW()
);
ALTER TABLE nf_jobs
    ALTER COLUMN tenant_id SET NOT NULL,
    ALTER COLUMN status SET NOT NULL,
    ADD COLUMN IF NOT EXISTS num BIGINT,
    ADD COLUMN IF NOT EXISTS request JSONB,
    ADD COLUMN IF NOT EXISTS replicas INT NOT NULL DEFAULT 1,
    ADD COLUMN IF NOT EXISTS priority INT NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS idempotency_key TEXT,
    ADD COLUMN IF NOT EXISTS intake_key TEXT,
    ADD COLUMN IF NOT EXISTS queue_reason TEXT,
    ADD COLUMN IF NOT EXISTS borrowed BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN IF NOT EXISTS claimed_by TEXT,
    ADD COLUMN IF NOT EXISTS placed_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS finished_at TIMESTAMPTZ,
    ADD COLUMN IF NOT EXISTS attempts INT NOT NULL DEFAULT 0;
ALTER TABLE nf_jobs DROP CONSTRAINT IF EXISTS nf_jobs_status;
ALTER TABLE nf_jobs ADD CONSTRAINT nf_jobs_status
    CHECK (status IN ('queued', 'placed', 'running', 'completed', 'failed', 'evicted'));
CREATE UNIQUE INDEX IF NOT EXISTS nf_jobs_num ON nf_jobs (num);
CREATE UNIQUE INDEX IF NOT EXISTS nf_jobs_idempotency ON nf_jobs (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS nf_jobs_intake ON nf_jobs (intake_key)
    WHERE intake_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS nf_jobs_queue ON nf_jobs (priority DESC, attempts, num)
    WHERE status = 'queued' AND claimed_by IS NULL;
CREATE INDEX IF NOT EXISTS nf_jobs_claims ON nf_jobs (claimed_by)
    WHERE claimed_by IS NOT NULL;

-- One row per placed replica.
CREATE TABLE IF NOT EXISTS nf_placements (
    job_id TEXT NOT NULL REFERENCES nf_jobs (id) ON DELETE CASCADE,
    replica_index INT NOT NULL,
    tenant_id TEXT NOT NULL,
    node_id TEXT NOT NULL REFERENCES nf_nodes (id),
    devices INT[] NOT NULL,
    gpu_milli INT NOT NULL,
    cpu BIGINT NOT NULL,
    mem BIGINT NOT NULL,
    tpu INT NOT NULL,
    placed_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, replica_index)
);
CREATE INDEX IF NOT EXISTS nf_placements_node ON nf_placements (node_id);

-- The share of each GPU device a placed replica holds.
CREATE TABLE IF NOT EXISTS nf_reservations (
    job_id TEXT NOT NULL REFERENCES nf_jobs (id) ON DELETE CASCADE,
    replica_index INT NOT NULL,
    tenant_id TEXT NOT NULL,
    node_id TEXT NOT NULL REFERENCES nf_nodes (id),
    device INT NOT NULL,
    milli INT NOT NULL CHECK (milli BETWEEN 1 AND 1000),
    PRIMARY KEY (job_id, replica_index, device)
);
CREATE INDEX IF NOT EXISTS nf_reservations_device ON nf_reservations (node_id, device);

-- Quota cohorts: the nominal sum of their members and their total use (not tenant-scoped).
CREATE TABLE IF NOT EXISTS nf_cohorts (
    cohort TEXT PRIMARY KEY,
    nominal_gpu_milli BIGINT NOT NULL DEFAULT 0,
    nominal_cpu BIGINT NOT NULL DEFAULT 0,
    nominal_mem BIGINT NOT NULL DEFAULT 0,
    nominal_tpu BIGINT NOT NULL DEFAULT 0,
    used_gpu_milli BIGINT NOT NULL DEFAULT 0,
    used_cpu BIGINT NOT NULL DEFAULT 0,
    used_mem BIGINT NOT NULL DEFAULT 0,
    used_tpu BIGINT NOT NULL DEFAULT 0,
    CHECK (used_gpu_milli BETWEEN 0 AND nominal_gpu_milli AND used_cpu BETWEEN 0 AND nominal_cpu
        AND used_mem BETWEEN 0 AND nominal_mem AND used_tpu BETWEEN 0 AND nominal_tpu)
);

-- Tenant quotas and their use (9223372036854775807 = unlimited).
CREATE TABLE IF NOT EXISTS nf_quotas (
    tenant_id TEXT PRIMARY KEY,
    cohort TEXT NOT NULL REFERENCES nf_cohorts (cohort),
    nominal_gpu_milli BIGINT NOT NULL,
    nominal_cpu BIGINT NOT NULL,
    nominal_mem BIGINT NOT NULL,
    nominal_tpu BIGINT NOT NULL,
    borrow_gpu_milli BIGINT NOT NULL DEFAULT 0,
    borrow_cpu BIGINT NOT NULL DEFAULT 0,
    borrow_mem BIGINT NOT NULL DEFAULT 0,
    borrow_tpu BIGINT NOT NULL DEFAULT 0,
    used_gpu_milli BIGINT NOT NULL DEFAULT 0,
    used_cpu BIGINT NOT NULL DEFAULT 0,
    used_mem BIGINT NOT NULL DEFAULT 0,
    used_tpu BIGINT NOT NULL DEFAULT 0,
    CHECK (used_gpu_milli >= 0 AND used_cpu >= 0 AND used_mem >= 0 AND used_tpu >= 0)
);

-- Decision events (placed, queued, released, recovered ...).
CREATE TABLE IF NOT EXISTS nf_events (
    id BIGSERIAL PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    job_id TEXT,
    kind TEXT NOT NULL,
    detail JSONB NOT NULL DEFAULT '{}'::jsonb,
    replica_id TEXT,
    at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS nf_events_job ON nf_events (job_id);

-- Scheduler replicas and their leases (renewed by a heartbeat).
CREATE TABLE IF NOT EXISTS nf_replicas (
    replica_id TEXT PRIMARY KEY,
    host TEXT NOT NULL DEFAULT '',
    pid INT NOT NULL DEFAULT 0,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_expires TIMESTAMPTZ NOT NULL
);

-- The journal and snapshots of a single-process Fabric (the `Store` trait on PostgreSQL).
CREATE TABLE IF NOT EXISTS nf_journal (
    store TEXT NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    command JSONB NOT NULL,
    PRIMARY KEY (store, seq)
);
CREATE TABLE IF NOT EXISTS nf_snapshots (
    store TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    state BYTEA NOT NULL
);

-- Row-level security on every tenant-scoped table.
DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['nf_jobs', 'nf_placements', 'nf_reservations', 'nf_quotas', 'nf_events']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('DROP POLICY IF EXISTS nf_tenant_isolation ON %I', t);
        EXECUTE format(
            'CREATE POLICY nf_tenant_isolation ON %I TO atom_app'
            ' USING (tenant_id = current_setting(''app.tenant_id'', true))'
            ' WITH CHECK (tenant_id = current_setting(''app.tenant_id'', true))', t);
        -- The migrating role (the owner) keeps full access for operations and audits.
        EXECUTE format('DROP POLICY IF EXISTS nf_owner_access ON %I', t);
        EXECUTE format('CREATE POLICY nf_owner_access ON %I TO %I USING (true) WITH CHECK (true)',
            t, current_user);
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO atom_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON nf_jobs, nf_placements, nf_reservations, nf_quotas,
    nf_events TO atom_app;
GRANT SELECT, INSERT, UPDATE ON nf_nodes, nf_cohorts, nf_replicas TO atom_app;
GRANT DELETE ON nf_replicas TO atom_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON nf_journal, nf_snapshots TO atom_app;
GRANT USAGE, SELECT ON SEQUENCE nf_job_seq, nf_events_id_seq, nf_nodes_registered_seq_seq
    TO atom_app;

-- Claims up to p_limit queued, unclaimed jobs of any tenant for a replica (the queue is
-- cross-tenant; each job is then placed in a transaction scoped to its own tenant).
CREATE OR REPLACE FUNCTION nf_claim_queued(p_replica TEXT, p_limit INT)
RETURNS TABLE (job_id TEXT, job_tenant TEXT)
LANGUAGE sql SECURITY DEFINER SET search_path = public, pg_temp AS $$
    UPDATE nf_jobs j SET claimed_by = p_replica
    WHERE j.id IN (
        SELECT q.id FROM nf_jobs q
        WHERE q.status = 'queued' AND q.claimed_by IS NULL
        ORDER BY q.priority DESC, q.attempts, q.num
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED)
    RETURNING j.id, j.tenant_id
$$;

-- Drops replicas whose lease expired and hands their in-flight jobs back to the queue.
-- Returns the number of jobs recovered.
CREATE OR REPLACE FUNCTION nf_recover_expired()
RETURNS BIGINT
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n BIGINT;
BEGIN
    DELETE FROM nf_replicas WHERE lease_expires < now();
    WITH freed AS (
        UPDATE nf_jobs j SET claimed_by = NULL
        WHERE j.claimed_by IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM nf_replicas r WHERE r.replica_id = j.claimed_by)
        RETURNING j.id, j.tenant_id, j.status)
    , ev AS (
        INSERT INTO nf_events (tenant_id, job_id, kind)
        SELECT tenant_id, id, 'recovered' FROM freed)
    SELECT count(*) INTO n FROM freed;
    RETURN n;
END
$$;

REVOKE ALL ON FUNCTION nf_claim_queued(TEXT, INT) FROM PUBLIC;
REVOKE ALL ON FUNCTION nf_recover_expired() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION nf_claim_queued(TEXT, INT), nf_recover_expired() TO atom_app;
