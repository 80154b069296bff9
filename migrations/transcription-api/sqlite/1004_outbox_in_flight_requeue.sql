-- Idempotency keys of requests still in flight (a replay before this time gets 409), and when a
-- queued record was last handed to the queue (the relay re-queues it once that is too long ago).
ALTER TABLE idempotency_keys ADD COLUMN in_flight_until_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE transcriptions ADD COLUMN queued_at_ms BIGINT NOT NULL DEFAULT 0;
CREATE INDEX transcriptions_queued_at ON transcriptions (queued_at_ms) WHERE status = 'queued';
