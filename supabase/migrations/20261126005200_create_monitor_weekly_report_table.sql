-- Why: the guide sends a detailed report every Monday at 09:00. Each report is kept as one
-- JSON row (what was sent can be read again, and compared week to week), one per week and
-- time zone, so the hourly job that produces it can never produce a week twice.

create table credit_private.monitor_weekly_report (
  id bigint generated always as identity primary key,
  week_start date not null,
  time_zone text not null,
  period_start timestamptz not null,
  period_end timestamptz not null,
  report jsonb not null,
  created_at timestamptz not null default now(),
  constraint monitor_weekly_report_week_unique unique (week_start, time_zone),
  constraint monitor_weekly_report_period_ordered check (period_end > period_start),
  constraint monitor_weekly_report_is_object check (jsonb_typeof(report) = 'object')
);

alter table credit_private.monitor_weekly_report enable row level security;
revoke all on credit_private.monitor_weekly_report from public, anon, authenticated, service_role;

comment on table credit_private.monitor_weekly_report is
  'One weekly report per week (week_start, a local date in time_zone) as produced by credit_private.produce_weekly_report: period_start and period_end are that week''s local midnights; report is the JSON built by credit_private.build_weekly_report. Kept (not cleaned up).';
