-- Idempotency-Key: the first answer to a write, recorded in the write's own transaction so that a
-- retry on any replica replays it instead of applying the write again. Keyed by scope (whose key it
-- is: a crebitos client, a user, a client address) and the client's key, so two clients can neither
-- collide nor read each other's answers. `fingerprint` (SHA-256 of method, path and body) tells a
-- retry from another request reusing the key. The row is claimed before the write (a duplicate in
-- flight waits on it) and given its answer before the commit, so a committed row always has one.
-- Logged, like the writes it guards: an answer whose write survived a crash must survive it too.
-- Rows past expires_at mean nothing and are pruned.
create table idempotency_keys (
  scope       text not null,
  key         text not null,
  fingerprint bytea not null,
  status      smallint,
  body        text,
  created_at  timestamptz not null default now(),
  expires_at  timestamptz not null,
  primary key (scope, key)
);

create index idempotency_keys_expires_at on idempotency_keys (expires_at);
