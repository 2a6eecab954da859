-- Rate limits shared by every replica, one row per key (e.g. address + sheet), as a GCRA: each
-- attempt books 1/limit of a minute; busy_until is when the booked time runs out. An attempt is let
-- through while the bookings stay within a minute of now, so a burst of `limit` passes at once and
-- then `limit` a minute. Unlogged: a crash only forgives the last minute's attempts, and no attempt
-- costs a WAL write. A row whose busy_until has passed means nothing and may be deleted.
create unlogged table rate_limits (
  key        text primary key,
  busy_until timestamptz not null
);

create index rate_limits_busy_until on rate_limits (busy_until);
