-- The attempt a record is on: 1 at submission, one more each time its owner retries it after it
-- failed (POST /transcriptions/{id}/retry). Each attempt is a fresh transcribe job
-- (`<id>-attempt-<n>` from the second on) with its own notification.
ALTER TABLE transcriptions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
