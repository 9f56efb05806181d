-- Why: the admin endpoint is open at the gateway (it checks its own key), so anyone can try
-- keys against it. A client that fails the key check too often is refused for a while. The
-- counters must live in the database: on hosted Supabase each request may land on another
-- edge isolate, and isolates share no memory. The table is bounded (one row per failing
-- client, at most settings.admin_auth_max_clients, then one shared overflow row) and cleans
-- itself: every call deletes a few rows whose window and block are over.

create table credit_private.admin_auth_failure (
  client text primary key,
  failures bigint not null,
  window_started_at timestamptz not null,
  last_failure_at timestamptz not null,
  blocked_until timestamptz,
  expires_at timestamptz not null,
  constraint admin_auth_failure_client_length check (char_length(client) between 1 and 128),
  constraint admin_auth_failure_failures_positive check (failures > 0)
);

create index admin_auth_failure_expires_at_idx on credit_private.admin_auth_failure (expires_at);

alter table credit_private.admin_auth_failure enable row level security;
revoke all on credit_private.admin_auth_failure from public, anon, authenticated, service_role;

comment on table credit_private.admin_auth_failure is
  'Failed admin key checks per client (the caller''s address as the admin endpoint sees it): failures in the current window, and blocked_until when the client is refused. A row can be deleted once expires_at has passed (its window and block are over); public.record_admin_auth_attempt does so a few rows at a time. The client ''*overflow*'' counts the failures of new clients while settings.admin_auth_max_clients rows exist. Delete a client''s row to unblock it at once.';
comment on column credit_private.admin_auth_failure.client is
  'The client as the admin endpoint identifies it: the first X-Forwarded-For address, else the connection''s address; ''*overflow*'' for the shared overflow counter.';
comment on column credit_private.admin_auth_failure.expires_at is
  'When both the failure window and the block are over: from then on the row means nothing and may be deleted.';

create function public.record_admin_auth_attempt(client text, succeeded boolean)
returns jsonb
language plpgsql
-- Definer: the counters live in credit_private, which no API role may read or write; this
-- is the one path the admin endpoint (service_role) has to them.
security definer
set search_path = ''
as $$
declare
  v_settings credit_private.settings := credit_private.current_settings();
  v_client text := record_admin_auth_attempt.client;
  v_row credit_private.admin_auth_failure;
  v_tracked bigint;
begin
  if v_client is null or char_length(v_client) not between 1 and 128 then
    raise exception 'client must be 1 to 128 characters' using errcode = '22023';
  end if;
  if record_admin_auth_attempt.succeeded is null then
    raise exception 'succeeded must be true or false' using errcode = '22023';
  end if;

  -- Bounded cleanup: a few rows whose window and block are both over, oldest first.
  delete from credit_private.admin_auth_failure f
  where f.client in (
    select e.client
    from credit_private.admin_auth_failure e
    where e.expires_at < now()
    order by e.expires_at
    limit 100
  );

  select * into v_row from credit_private.admin_auth_failure f where f.client = v_client for update;
  if not found then
    -- A client without a row of its own, while the table is full, is counted (and refused)
    -- in the shared overflow row, whether its key is right or not: a success must not reveal
    -- a right key while wrong ones are refused.
    select count(*) into v_tracked
    from (select 1 from credit_private.admin_auth_failure e limit v_settings.admin_auth_max_clients) t;
    if v_tracked >= v_settings.admin_auth_max_clients then
      v_client := '*overflow*';
      select * into v_row from credit_private.admin_auth_failure f where f.client = v_client for update;
    end if;
  end if;

  -- A blocked client is refused whatever it sends, and the refusal does not extend the block.
  if v_row.blocked_until > now() then
    return jsonb_build_object(
      'allowed', false, 'blocked', true, 'failures', v_row.failures,
      'retry_after_seconds', greatest(1, ceil(extract(epoch from v_row.blocked_until - now())))::integer
    );
  end if;

  if record_admin_auth_attempt.succeeded then
    -- A right key forgets the client's own failures (never the shared overflow row's).
    delete from credit_private.admin_auth_failure f where f.client = v_client and v_client <> '*overflow*';
    return jsonb_build_object('allowed', true, 'blocked', false, 'failures', 0, 'retry_after_seconds', null);
  end if;

  insert into credit_private.admin_auth_failure as f
    (client, failures, window_started_at, last_failure_at, expires_at)
  values (v_client, 1, now(), now(), now() + v_settings.admin_auth_failure_window)
  on conflict on constraint admin_auth_failure_pkey do update
  set failures = case when f.window_started_at <= now() - v_settings.admin_auth_failure_window
                      then 1 else f.failures + 1 end,
      window_started_at = case when f.window_started_at <= now() - v_settings.admin_auth_failure_window
                               then now() else f.window_started_at end,
      last_failure_at = now(),
      blocked_until = null
  returning * into v_row;

  update credit_private.admin_auth_failure f
  set blocked_until = case when f.failures >= v_settings.admin_auth_max_failures
                           then now() + v_settings.admin_auth_block_duration end,
      expires_at = greatest(
        f.window_started_at + v_settings.admin_auth_failure_window,
        case when f.failures >= v_settings.admin_auth_max_failures
             then now() + v_settings.admin_auth_block_duration else '-infinity'::timestamptz end
      )
  where f.client = v_client
  returning * into v_row;

  return jsonb_build_object(
    'allowed', false,
    'blocked', v_row.blocked_until is not null,
    'failures', v_row.failures,
    'retry_after_seconds', case when v_row.blocked_until is not null
      then greatest(1, ceil(extract(epoch from v_row.blocked_until - now())))::integer end
  );
end;
$$;

revoke execute on function public.record_admin_auth_attempt(text, boolean) from public, anon, authenticated;
grant execute on function public.record_admin_auth_attempt(text, boolean) to service_role;

comment on function public.record_admin_auth_attempt(text, boolean) is
  'Called by the admin endpoint once per request, after its key check: returns {allowed, blocked, failures, retry_after_seconds}. A client blocked (settings.admin_auth_max_failures failures within admin_auth_failure_window) is refused for admin_auth_block_duration whatever its key, and the failure that reaches the limit blocks at once. A success clears the client''s failures. Deletes up to 100 expired rows per call; beyond settings.admin_auth_max_clients rows, new clients share the ''*overflow*'' row. Errors: 22023 bad arguments.';
