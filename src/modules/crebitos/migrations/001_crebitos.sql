-- crebitos: Rinha de Backend 2024/Q1 accounts. The balance check is the last line of defence;
-- the debit statement itself refuses to cross it.
create table clientes (
  id     integer primary key,
  limite integer not null check (limite >= 0),
  saldo  integer not null default 0,
  constraint saldo_within_limite check (saldo >= -limite)
);

create table transacoes (
  id           bigint generated always as identity primary key,
  cliente_id   integer not null references clientes (id),
  valor        integer not null check (valor > 0),
  tipo         char(1) not null check (tipo in ('c', 'd')),
  descricao    varchar(10) not null check (descricao <> ''),
  realizada_em timestamptz not null default clock_timestamp()
);

-- The statement reads the newest ten of one client.
create index transacoes_cliente_recentes on transacoes (cliente_id, id desc);

insert into clientes (id, limite) values
  (1, 100000),
  (2, 80000),
  (3, 1000000),
  (4, 10000000),
  (5, 500000)
on conflict (id) do nothing;
