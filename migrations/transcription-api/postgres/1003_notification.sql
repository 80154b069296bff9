-- Whether the owner was told by e-mail (PostgreSQL): `pending` until the notifier reports `sent` or
-- `failed` (with its reason) through PUT /internal/transcriptions/{id}/notification.
ALTER TABLE transcriptions ADD COLUMN notification TEXT NOT NULL DEFAULT 'pending'
    CHECK (notification IN ('pending', 'sent', 'failed'));
ALTER TABLE transcriptions ADD COLUMN notification_reason TEXT;
