-- Transcriptions, the outbox of jobs not yet confirmed queued, and idempotency keys (SQLite).
CREATE TABLE transcriptions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    owner      TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    email      TEXT NOT NULL,
    audio_url  TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    transcript TEXT,
    error      TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE INDEX transcriptions_owner_seq ON transcriptions (owner, seq DESC);

CREATE TABLE transcription_outbox (
    transcription_id TEXT PRIMARY KEY REFERENCES transcriptions (id) ON DELETE CASCADE,
    due_at_ms        INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX transcription_outbox_due ON transcription_outbox (due_at_ms);

CREATE TABLE idempotency_keys (
    owner            TEXT NOT NULL,
    key              TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    transcription_id TEXT NOT NULL REFERENCES transcriptions (id) ON DELETE CASCADE,
    created_at_ms    INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
);

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_ms);
CREATE INDEX idempotency_keys_transcription ON idempotency_keys (transcription_id);
