-- crebitos: several transactions of one client in one statement and one commit. Requests for one
-- client queue behind its row lock anyway; a replica sends those that arrived while the previous
-- statement ran as one call, so a burst costs one round trip and one WAL flush instead of one each.
--
-- The items are applied in array order against the balance under the row lock, exactly as the
-- single-statement path would apply them one after the other. For each item, `saldos` holds the
-- balance right after it and `refusals` 0; a debit that would cross -limite is refused (1) and
-- changes nothing; an item whose balance would leave 32 bits is not applied (2): the caller sends it
-- again on its own, where it gets the single path's answer. (No NULLs in the arrays: postgres.js
-- reads a NULL in a text array as the string 'NULL'.) No row: unknown client, nothing returned.
create function crebitos_apply(
  cliente    integer,
  valores    integer[],
  tipos      text[],
  descricoes text[]
) returns table (limite integer, saldos integer[], refusals smallint[])
language plpgsql as $$
declare
  v_limite  integer;
  v_saldo   bigint;
  v_next    bigint;
  v_saldos  integer[] := '{}';
  v_refused smallint[] := '{}';
begin
  select c.limite, c.saldo into v_limite, v_saldo from clientes c where c.id = cliente for update;
  if not found then
    return;
  end if;
  for i in 1 .. coalesce(array_length(valores, 1), 0) loop
    v_next := v_saldo + case when tipos[i] = 'c' then valores[i] else -valores[i] end;
    if v_next < -v_limite then
      v_saldos := v_saldos || v_saldo::integer;
      v_refused := v_refused || 1::smallint;
    elsif v_next > 2147483647 or v_next < -2147483648 then
      v_saldos := v_saldos || v_saldo::integer;
      v_refused := v_refused || 2::smallint;
    else
      v_saldo := v_next;
      v_saldos := v_saldos || v_saldo::integer;
      v_refused := v_refused || 0::smallint;
    end if;
  end loop;
  update clientes c set saldo = v_saldo where c.id = cliente;
  insert into transacoes (cliente_id, valor, tipo, descricao)
  select cliente, u.valor, u.tipo, u.descricao
    from unnest(valores, tipos, descricoes, v_refused) with ordinality as u(valor, tipo, descricao, refused, n)
   where u.refused = 0
   order by u.n;
  return query select v_limite, v_saldos, v_refused;
end
$$;
