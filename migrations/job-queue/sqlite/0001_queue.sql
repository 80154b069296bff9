-- job-queue: the embedded durable queue (its own database file, e.g. data/queue.db).

-- One row per pending job: ready, processing (reserved by a worker), delayed (waiting for a
-- retry) or dead. The row is deleted when the job is acked or its dead entry purged, which
-- also frees the id for duplicate suppression.
CREATE TABLE queue_jobs (
    queue       TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('ready', 'processing', 'delayed', 'dead')),
    -- Order within the ready queue: new and promoted jobs get MAX(seq) + 1 (back), released
    -- and reaped jobs MIN(seq) - 1 (front).
    seq         INTEGER NOT NULL,
    -- The signed job exactly as it is delivered (envelope + HMAC).
    job         TEXT    NOT NULL,
    kind        TEXT,
    attempt     INTEGER NOT NULL DEFAULT 0,
    enqueued_at INTEGER NOT NULL,            -- Unix ms
    due_at      INTEGER,                     -- delayed: retry time, Unix ms
    worker      TEXT,                        -- processing: the holder
    reservation TEXT,                        -- processing: token of the current delivery
    reserved_at INTEGER,                     -- processing: Unix ms
    reason      TEXT,                        -- dead: why
    died_at     INTEGER,                     -- dead: Unix ms
    verified    INTEGER NOT NULL DEFAULT 1,  -- dead: 0 when the signature was rejected
    PRIMARY KEY (queue, id)
);

CREATE INDEX queue_jobs_ready ON queue_jobs (queue, state, seq);
CREATE INDEX queue_jobs_due ON queue_jobs (queue, state, due_at);
CREATE INDEX queue_jobs_seq ON queue_jobs (seq);
CREATE INDEX queue_jobs_worker ON queue_jobs (state, worker);

-- Worker heartbeats: a worker is alive while alive_until (Unix ms) is in the future.
CREATE TABLE queue_workers (
    worker      TEXT    PRIMARY KEY,
    alive_until INTEGER NOT NULL
);
