-- A session ends when its row goes (logout, password change, the prune of expired ones) or its token
-- is replaced: every replica LISTENs on "session_ends" and ends what it holds open for that session
-- (event streams). The payload is the token's hash in hex, never the token. Sent at commit, so a
-- rolled-back logout ends nothing. Expiry and idleness change no row: replicas sweep for those.
create function notify_session_end() returns trigger language plpgsql as $$
begin
  perform pg_notify('session_ends', encode(old.token_hash, 'hex'));
  return null;
end
$$;

create trigger sessions_deleted after delete on sessions
  for each row execute function notify_session_end();

create trigger sessions_token_replaced after update of token_hash on sessions
  for each row when (old.token_hash is distinct from new.token_hash)
  execute function notify_session_end();
