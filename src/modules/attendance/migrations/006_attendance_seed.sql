-- The reference data the original seeded. Safe to run again: existing rows are left as they are.
insert into departments (id, name, initials) values
  (4, 'DETI', 'DETI')
on conflict (id) do nothing;

insert into course_units (id, name, department_id) values
  (0, 'PI', 4),
  (1, 'MAS', 4),
  (2, 'ITW', 4),
  (3, 'TPW', 4)
on conflict (id) do nothing;
