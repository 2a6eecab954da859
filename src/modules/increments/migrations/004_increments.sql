-- increments: one total per key, shared by all users. Totals stay within JavaScript's exact integers.
create table increments (
  key        text primary key check (length(key) between 1 and 200),
  value      bigint not null check (value between -9007199254740991 and 9007199254740991),
  updated_at timestamptz not null default now()
);
