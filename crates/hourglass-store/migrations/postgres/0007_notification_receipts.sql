-- What a destination answered when it took a notification (a Slack message's channel and ts),
-- so that later messages about the same request update it in place.
ALTER TABLE notifications ADD COLUMN receipt TEXT;
