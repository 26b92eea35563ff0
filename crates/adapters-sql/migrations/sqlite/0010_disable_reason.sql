-- regstack-rs schema, version 10: an administrator's disabling with a
-- reason and an optional end.
--
-- `disabled_reason` is for administrators only; `disabled_until` (µs since
-- the epoch, like every instant here) is when the disabling ends by itself:
-- the account counts as active from that instant on, and housekeeping
-- (`reenable_expired`) writes the re-enabling down. Both are set only while
-- the account is disabled. The partial index serves that sweep.
ALTER TABLE users ADD COLUMN disabled_reason TEXT;
ALTER TABLE users ADD COLUMN disabled_until INTEGER;
CREATE INDEX users_disabled_until ON users (disabled_until)
    WHERE disabled_until IS NOT NULL;
