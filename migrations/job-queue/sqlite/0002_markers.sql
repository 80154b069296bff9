-- job-queue: markers that outlive a job (ReliableQueue::set_marker), e.g. "the e-mail of
-- notify job X was accepted by the SMTP server", so every notifier replica sharing this
-- database skips a redelivered job. A marker counts while expires_at (Unix ms) is in the future.
CREATE TABLE queue_markers (
    name       TEXT    PRIMARY KEY,
    expires_at INTEGER NOT NULL
);
