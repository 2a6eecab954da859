-- counter: the cluster-wide request count when no Redis is configured. One row per named counter.
create table counters (
  name  text primary key,
  value bigint not null default 0 check (value >= 0)
);

insert into counters (name) values ('requests') on conflict (name) do nothing;
