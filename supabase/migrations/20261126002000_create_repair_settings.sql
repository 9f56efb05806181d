-- Why: the diagnosis needs thresholds (when is a webhook "failed", a recharge "stuck") that
-- an operator must be able to change without a migration, and the monitoring issue needs a
-- place for its switches. One typed row: every setting has a type, a check and a documented
-- default, and a later migration adds a setting with `alter table ... add column ... default`.

create table credit_private.settings (
  singleton boolean primary key default true,
  failed_webhook_age interval not null default '15 minutes',
  deferred_webhook_age interval not null default '1 day',
  stuck_recharge_age interval not null default '1 hour',
  incremental_overlap interval not null default '5 minutes',
  incremental_first_lookback interval not null default '1 day',
  max_report_rows bigint not null default 100,
  retry_skip_error_codes text[] not null default '{CR003}',
  updated_at timestamptz not null default now(),
  constraint settings_single_row check (singleton),
  constraint settings_ages_positive check (
    failed_webhook_age > interval '0' and deferred_webhook_age > interval '0'
    and stuck_recharge_age > interval '0' and incremental_first_lookback > interval '0'
  ),
  constraint settings_overlap_not_negative check (incremental_overlap >= interval '0'),
  constraint settings_max_report_rows_in_range check (max_report_rows between 0 and 100000)
);

insert into credit_private.settings default values;

alter table credit_private.settings enable row level security;
revoke all on credit_private.settings from public, anon, authenticated, service_role;

comment on table credit_private.settings is
  'The one row of settings of the diagnosis, repair and monitoring (singleton = true). Change a value with update credit_private.settings set ...; a missing row makes the diagnosis fail loudly rather than report nothing.';
comment on column credit_private.settings.failed_webhook_age is
  'An inbox event still received (not processed) after this long is a failed webhook. Default 15 minutes.';
comment on column credit_private.settings.deferred_webhook_age is
  'A refund or dispute deferred (its payment never credited) for this long is a failed webhook. Default 1 day.';
comment on column credit_private.settings.stuck_recharge_age is
  'A recharge still pending after this long is stuck. Default 1 hour.';
comment on column credit_private.settings.incremental_overlap is
  'The incremental check looks this far before its last watermark, so rows of transactions that started before a run and committed after it are still seen. Must exceed the longest write transaction. Default 5 minutes.';
comment on column credit_private.settings.incremental_first_lookback is
  'How far back the first incremental run of a checker looks. Default 1 day.';
comment on column credit_private.settings.max_report_rows is
  'Findings listed per category in a report (counts are always exact). Default 100.';
comment on column credit_private.settings.retry_skip_error_codes is
  'SQLSTATEs of failed events that retrying all failed events skips, because they fail the same way every time (CR003: malformed or inconsistent metadata). Retry such an event by its id once its cause is fixed. Default {CR003}.';

create function credit_private.current_settings()
returns credit_private.settings
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_settings credit_private.settings;
begin
  select * into v_settings from credit_private.settings where singleton;
  if not found then
    raise exception 'credit_private.settings has no row'
      using errcode = 'P0002', hint = 'insert into credit_private.settings default values;';
  end if;
  return v_settings;
end;
$$;

revoke execute on function credit_private.current_settings() from public, anon, authenticated, service_role;

comment on function credit_private.current_settings() is
  'The settings row; raises P0002 when it was deleted, so no check silently runs without thresholds.';
