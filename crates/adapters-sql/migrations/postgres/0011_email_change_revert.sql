-- regstack-rs schema, version 11: the "this wasn't me" link of an email
-- change (`notices.email_changed`), mailed to the old address. A token of
-- kind `email_change_revert` names, in `new_email`, the address to restore.
ALTER TABLE one_time_tokens DROP CONSTRAINT one_time_tokens_kind_check;
ALTER TABLE one_time_tokens ADD CONSTRAINT one_time_tokens_kind_check
    CHECK (kind IN ('password_reset', 'email_change', 'email_change_revert'));
