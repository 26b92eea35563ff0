-- regstack-rs schema, version 7: the administrator's account list.
--
-- `GET /admin/users` pages newest first (`created_at` then `id`,
-- descending) by offset or by a cursor naming the last listed account;
-- this index serves both orders (read backwards), so a page costs its
-- own rows rather than a sort of the whole table.
CREATE INDEX users_created_at_id ON users (created_at, id);
