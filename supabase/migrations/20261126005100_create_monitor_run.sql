-- Why: the guide's monitor appends to logs/payment-monitor.log. On Supabase the database runs
-- the monitor, so its log is a table: one row per run with what it found per category, what
-- it repaired, what is left, which alerts it raised and every error a step hit (recorded,
-- never dropped). A view shows the latest runs in words, for the dashboard's table editor or
-- SQL editor. Both live in the private schema: no API role may read them.

create table credit_private.monitor_run (
  id bigint generated always as identity primary key,
  started_at timestamptz not null default clock_timestamp(),
  finished_at timestamptz,
  duration interval generated always as (finished_at - started_at) stored,
  status text not null default 'running',
  forced boolean not null default false,
  backend_pid bigint not null default pg_backend_pid(),
  window_from timestamptz,
  window_to timestamptz,
  findings jsonb not null default '{}',
  finding_ids jsonb not null default '{}',
  repaired jsonb not null default '{}',
  remaining jsonb not null default '{}',
  repairs jsonb not null default '[]',
  alerts jsonb not null default '[]',
  errors jsonb not null default '[]',
  report jsonb,
  constraint monitor_run_status_known
    check (status in ('running', 'ok', 'repaired', 'problems', 'failed', 'paused')),
  constraint monitor_run_finished_after_start check (finished_at >= started_at),
  constraint monitor_run_json_shapes check (
    jsonb_typeof(findings) = 'object' and jsonb_typeof(finding_ids) = 'object' and jsonb_typeof(repaired) = 'object' and jsonb_typeof(remaining) = 'object'
    and jsonb_typeof(repairs) = 'array' and jsonb_typeof(alerts) = 'array' and jsonb_typeof(errors) = 'array'
  )
);

create index monitor_run_started_at_idx on credit_private.monitor_run (started_at);

alter table credit_private.monitor_run enable row level security;
revoke all on credit_private.monitor_run from public, anon, authenticated, service_role;

comment on table credit_private.monitor_run is
  'The package''s log (the guide''s logs/payment-monitor.log): one row per monitor run. status: ok (nothing found), repaired (all found was repaired), problems (something remains), failed (a step raised an error, see errors), paused (settings.monitor_enabled is false). findings, repaired and remaining count per diagnosis category; finding_ids names what was found ({category: [ids]}, up to settings.monitor_repair_batch each), so that a week counts each inconsistency once; repairs lists each repair attempted ({category, action, target, outcome, repair_run_id, detail}; repair_run_id groups its rows in credit_private.repair_log); alerts lists what happened to each alert ({fingerprint, outcome}); errors lists every step error ({step, target, sqlstate, message, context}); backend_pid is the server process that ran it (for a pg_cron run, cron.job_run_details.job_pid); report is the incremental check''s report with at most 10 findings per category. A run is one transaction, so a committed row is never running.';

-- "3 orphaned_recharges, 1 failed_webhooks" from {category: count}; null when all are zero.
create function credit_private.monitor_counts_text(p_counts jsonb)
returns text
language sql
immutable
security invoker
set search_path = ''
as $$
  select string_agg(format('%s %s', c.value, c.key), ', ' order by c.key)
  from jsonb_each_text(coalesce(p_counts, '{}'::jsonb)) c
  where c.value::bigint <> 0
$$;

revoke execute on function credit_private.monitor_counts_text(jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.monitor_counts_text(jsonb) is
  'Renders {category: count} as "n category, ..." (non-zero counts, by name); null when every count is zero.';

create view credit_private.monitor_latest_runs
with (security_invoker = on)
as
select
  r.id,
  r.started_at,
  r.duration,
  r.status,
  (select coalesce(sum(c.value::bigint), 0) from jsonb_each_text(r.findings) c) as found,
  (select coalesce(sum(c.value::bigint), 0) from jsonb_each_text(r.repaired) c) as repaired,
  (select coalesce(sum(c.value::bigint), 0) from jsonb_each_text(r.remaining) c) as remaining,
  jsonb_array_length(r.errors) as error_count,
  case r.status
    when 'paused' then 'paused (settings.monitor_enabled = false): nothing checked'
    when 'ok' then 'nothing found'
    else concat_ws('; ',
      'found ' || credit_private.monitor_counts_text(r.findings),
      'repaired ' || credit_private.monitor_counts_text(r.repaired),
      'left ' || credit_private.monitor_counts_text(r.remaining),
      'alerts ' || (select string_agg(format('%s %s', a ->> 'outcome', a ->> 'fingerprint'), ', ')
                    from jsonb_array_elements(r.alerts) a where a ->> 'outcome' <> 'unchanged'),
      'errors ' || (select string_agg(format('%s: %s %s', e ->> 'step', e ->> 'sqlstate', e ->> 'message'), ', ')
                    from jsonb_array_elements(r.errors) e))
  end as summary,
  r.findings,
  r.repairs,
  r.alerts,
  r.errors
from credit_private.monitor_run r
where r.status <> 'running'
order by r.started_at desc, r.id desc
limit 200;

revoke all on credit_private.monitor_latest_runs from public, anon, authenticated, service_role;

comment on view credit_private.monitor_latest_runs is
  'The 200 latest monitor runs, newest first, with totals and a one-line summary (found, repaired, left, alerts sent or resolved, errors): select * from credit_private.monitor_latest_runs in the dashboard''s SQL editor. The full rows are in credit_private.monitor_run.';
