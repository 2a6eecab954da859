-- Wrong current passwords given to PUT /api/users/me/password through this session, in a row: at
-- PASSWORD_CHANGE_MAX_FAILURES the session is deleted, so a stolen token cannot go on guessing the
-- password. Counted in the row, so every replica sees the same count. A constant default adds the
-- column without rewriting the table.
alter table sessions add column password_failures integer not null default 0;
