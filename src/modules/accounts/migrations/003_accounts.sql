-- accounts: users and their sessions. Emails are stored lower-case: one account per address.
create table users (
  id            integer generated always as identity primary key,
  email         text not null check (email = lower(email) and length(email) <= 254),
  password_hash text not null,
  created_at    timestamptz not null default now(),
  constraint users_email_unique unique (email)
);

-- A session is known by the SHA-256 of its token: a stolen table does not hand out live tokens.
create table sessions (
  token_hash   bytea primary key,
  user_id      integer not null references users (id) on delete cascade,
  created_at   timestamptz not null default now(),
  last_used_at timestamptz not null default now(),
  expires_at   timestamptz not null
);

create index sessions_user on sessions (user_id);
