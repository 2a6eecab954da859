-- attendance: teachers open sheets for a lesson, students sign in on them (docs/attendance.md §2).

-- Users registered before names existed keep "" until they set them.
alter table users
  add column first_name text not null default '' check (length(first_name) <= 100 and first_name = btrim(first_name)),
  add column last_name  text not null default '' check (length(last_name) <= 100 and last_name = btrim(last_name));

create table departments (
  id       integer primary key,
  name     text not null check (length(name) between 1 and 200),
  initials text not null check (length(initials) between 1 and 10)
);

create table course_units (
  id            integer primary key,
  name          text not null check (length(name) between 1 and 200),
  department_id integer not null references departments (id) on delete restrict
);

create index course_units_department on course_units (department_id, id);

-- public_id is what URLs and QR codes carry: 6 characters an eye does not confuse (no 0/O, 1/I/l).
create table attendance_sheets (
  id             integer generated always as identity primary key,
  public_id      char(6) not null
                 check (public_id ~ '^[23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz]{6}$'),
  creator_id     integer not null references users (id),
  course_unit_id integer not null references course_units (id),
  summary        text check (length(summary) between 1 and 50),
  is_active      boolean not null default true,
  created_at     timestamptz not null default now(),
  constraint attendance_sheets_public_id_unique unique (public_id)
);

-- "My course units" and "my sheets of a unit, newest first".
create index attendance_sheets_creator on attendance_sheets (creator_id, course_unit_id, created_at desc);

-- One row per student per sheet: a repeat sign-in conflicts on the key and changes nothing.
create table registrations (
  sheet_id      integer not null references attendance_sheets (id) on delete cascade,
  nmec          integer not null check (nmec between 1 and 99999999),
  name          text not null check (length(name) between 5 and 100 and name = btrim(name)),
  registered_at timestamptz not null default clock_timestamp(),
  added_by      integer references users (id), -- null: the student signed in; else the teacher who added them
  primary key (sheet_id, nmec)
);

create index registrations_by_time on registrations (sheet_id, registered_at, nmec);

-- Every replica LISTENs on "attendance" and tells the sheet's open event streams. The notification
-- is sent at commit, so a listener never hears of a change it could not yet read.
create function notify_attendance_registrations() returns trigger language plpgsql as $$
declare
  reason text := case tg_op when 'INSERT' then 'registered' else 'removed' end;
begin
  perform pg_notify('attendance', json_build_object('sheet', s.public_id, 'reason', reason)::text)
     from attendance_sheets s
    where s.id in (select sheet_id from changed);
  return null;
end
$$;

create trigger registrations_inserted after insert on registrations
  referencing new table as changed
  for each statement execute function notify_attendance_registrations();

create trigger registrations_deleted after delete on registrations
  referencing old table as changed
  for each statement execute function notify_attendance_registrations();

create function notify_attendance_status() returns trigger language plpgsql as $$
begin
  perform pg_notify('attendance', json_build_object('sheet', new.public_id, 'reason', 'status')::text);
  return null;
end
$$;

create trigger attendance_sheets_status after update of is_active on attendance_sheets
  for each row when (old.is_active is distinct from new.is_active)
  execute function notify_attendance_status();
