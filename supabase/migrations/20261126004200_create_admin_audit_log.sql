-- Why: the admin endpoint moves credits and changes the installation on request. Every call,
-- allowed or refused, must be explainable afterwards: when, which key (by its name, never the
-- key itself), from where, which action with which parameters, and what came of it. An
-- allowed call is logged BEFORE it acts (outcome 'started') and completed after, so no repair
-- runs without its audit row, and a row left 'started' shows a call that did not finish.
-- The rows live in the private schema, written only through the two RPCs below.

create table credit_private.admin_audit_log (
  id bigint generated always as identity primary key,
  created_at timestamptz not null default now(),
  finished_at timestamptz,
  key_name text not null,
  client text not null,
  method text not null,
  action text,
  params jsonb,
  dry_run boolean,
  reason text,
  outcome text not null,
  http_status bigint,
  error_code text,
  found bigint,
  changed bigint,
  run_id uuid,
  constraint admin_audit_log_key_name_shape check (key_name ~ '^[A-Za-z0-9_.-]{1,64}$'),
  constraint admin_audit_log_client_length check (char_length(client) between 1 and 128),
  constraint admin_audit_log_method_shape check (method ~ '^[A-Z]{1,16}$'),
  constraint admin_audit_log_action_shape check (action ~ '^[a-z_]{1,64}$'),
  constraint admin_audit_log_params_is_object check (jsonb_typeof(params) = 'object'),
  constraint admin_audit_log_params_small check (pg_column_size(params) <= 16384),
  constraint admin_audit_log_reason_length check (char_length(reason) between 1 and 500),
  constraint admin_audit_log_outcome_shape check (outcome ~ '^[a-z][a-z_]{0,39}$'),
  constraint admin_audit_log_started_has_no_status check ((outcome = 'started') = (http_status is null)),
  constraint admin_audit_log_http_status_range check (http_status between 100 and 599),
  constraint admin_audit_log_error_code_shape check (error_code ~ '^[a-z][a-z_]{0,39}$'),
  constraint admin_audit_log_counts_not_negative check (found >= 0 and changed >= 0)
);

create index admin_audit_log_created_at_idx on credit_private.admin_audit_log (created_at);
create index admin_audit_log_key_name_created_at_idx on credit_private.admin_audit_log (key_name, created_at);
create index admin_audit_log_client_created_at_idx on credit_private.admin_audit_log (client, created_at);

alter table credit_private.admin_audit_log enable row level security;
revoke all on credit_private.admin_audit_log from public, anon, authenticated, service_role;

comment on table credit_private.admin_audit_log is
  'One row per call of the admin endpoint (admin-fix-credits), allowed or refused: time, key_name (the configured key''s name, or ''unauthenticated''; never a key), client address, HTTP method, action, validated params, dry_run, reason, outcome (ok, started while running, or the error code of the refusal), http_status, found and changed, and run_id linking to credit_private.repair_log. Written only by public.log_admin_call and public.finish_admin_call; rows older than settings.admin_audit_retention are deleted a few at a time.';
comment on column credit_private.admin_audit_log.key_name is
  'Name of the admin key that authenticated the call (ADMIN_API_KEY is named default), or unauthenticated. Never the key.';
comment on column credit_private.admin_audit_log.outcome is
  'ok; started (logged before acting, not finished: the call may have done its work and failed to say so); or why it was refused or failed: unauthorized, rate_limited, method_not_allowed, payload_too_large, invalid_json, invalid_request, unknown_action, not_found, database_error, stripe_unavailable, reconcile_incomplete, internal_error.';
comment on column credit_private.admin_audit_log.run_id is
  'The run_id of the repair the call ran: its changes are the rows of credit_private.repair_log with this run_id.';

create function public.log_admin_call(
  key_name text,
  client text,
  method text,
  action text default null,
  params jsonb default null,
  dry_run boolean default null,
  reason text default null,
  outcome text default 'started',
  http_status integer default null,
  error_code text default null
)
returns bigint
language plpgsql
-- Definer: the log lives in credit_private, which no API role may write; this is the one path
-- the admin endpoint (service_role) has to it.
security definer
set search_path = ''
as $$
declare
  v_retention interval := (credit_private.current_settings()).admin_audit_retention;
  v_id bigint;
begin
  -- Bounded cleanup: a few rows past the retention, oldest first.
  delete from credit_private.admin_audit_log l
  where l.id in (
    select o.id
    from credit_private.admin_audit_log o
    where o.created_at < now() - v_retention
    order by o.created_at
    limit 100
  );

  insert into credit_private.admin_audit_log
    (key_name, client, method, action, params, dry_run, reason, outcome, http_status, error_code, finished_at)
  values (
    log_admin_call.key_name, log_admin_call.client, log_admin_call.method, log_admin_call.action,
    log_admin_call.params, log_admin_call.dry_run, log_admin_call.reason, log_admin_call.outcome,
    log_admin_call.http_status, log_admin_call.error_code,
    case when log_admin_call.outcome = 'started' then null else now() end
  )
  returning id into v_id;
  return v_id;
exception
  when check_violation or not_null_violation then
    -- The row's own checks name what is wrong; say it as a bad argument.
    raise exception 'invalid admin audit row: %', sqlerrm using errcode = '22023';
end;
$$;

revoke execute on function public.log_admin_call(text, text, text, text, jsonb, boolean, text, text, integer, text)
  from public, anon, authenticated;
grant execute on function public.log_admin_call(text, text, text, text, jsonb, boolean, text, text, integer, text)
  to service_role;

comment on function public.log_admin_call(text, text, text, text, jsonb, boolean, text, text, integer, text) is
  'Appends one admin endpoint call to credit_private.admin_audit_log and returns its id: a refusal with its final outcome and http_status, or (outcome started, http_status null) an allowed call about to act, to be completed by public.finish_admin_call. Deletes up to 100 rows older than settings.admin_audit_retention. Errors: 22023 when a value breaks the row''s checks.';

create function public.finish_admin_call(
  call_id bigint,
  outcome text,
  http_status integer,
  error_code text default null,
  found_count bigint default null,
  changed_count bigint default null,
  run_id uuid default null
)
returns void
language plpgsql
-- Definer: the log lives in credit_private, which no API role may write.
security definer
set search_path = ''
as $$
begin
  if finish_admin_call.outcome is null or finish_admin_call.outcome = 'started' or finish_admin_call.http_status is null then
    raise exception 'a finished call needs its outcome and http_status' using errcode = '22023';
  end if;

  update credit_private.admin_audit_log l
  set outcome = finish_admin_call.outcome,
      http_status = finish_admin_call.http_status,
      error_code = finish_admin_call.error_code,
      found = finish_admin_call.found_count,
      changed = finish_admin_call.changed_count,
      run_id = finish_admin_call.run_id,
      finished_at = now()
  where l.id = finish_admin_call.call_id and l.outcome = 'started';

  if not found then
    -- Finished rows are history: never rewritten.
    raise exception 'no started admin call %', finish_admin_call.call_id using errcode = 'PT404';
  end if;
exception
  when check_violation then
    raise exception 'invalid admin audit row: %', sqlerrm using errcode = '22023';
end;
$$;

revoke execute on function public.finish_admin_call(bigint, text, integer, text, bigint, bigint, uuid)
  from public, anon, authenticated;
grant execute on function public.finish_admin_call(bigint, text, integer, text, bigint, bigint, uuid) to service_role;

comment on function public.finish_admin_call(bigint, text, integer, text, bigint, bigint, uuid) is
  'Completes a started admin call (from public.log_admin_call) with its outcome, http_status, error_code, found_count, changed_count and the repair run_id. A finished row is never rewritten. Errors: PT404 no started call with this id, 22023 bad values.';
