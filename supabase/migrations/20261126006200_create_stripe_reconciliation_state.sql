-- Why: reconciliation compares the ledger with Stripe's own event list, which Stripe keeps
-- for 30 days. It must resume where it stopped, so it stores a watermark: every handled event
-- created before it is known to be settled in the inbox. The watermark only moves forward
-- and only over what a run verified. Each run's report is kept, since a scheduled run has no
-- one reading its HTTP answer.

create table credit_private.stripe_reconciliation_state (
  -- One row: the table holds a single watermark for the Stripe account.
  id boolean primary key default true,
  events_watermark timestamptz not null,
  updated_at timestamptz not null default now(),
  constraint stripe_reconciliation_state_single_row check (id)
);

alter table credit_private.stripe_reconciliation_state enable row level security;
revoke all on credit_private.stripe_reconciliation_state from public, anon, authenticated, service_role;

comment on table credit_private.stripe_reconciliation_state is
  'The reconciliation watermark: every handled Stripe event created before events_watermark has been listed from Stripe and is settled (processed, ignored or deferred) in the inbox. Moves forward only.';

create table credit_private.stripe_reconciliation_run (
  id bigint generated always as identity primary key,
  started_at timestamptz not null,
  finished_at timestamptz not null default now(),
  ok boolean not null,
  dry_run boolean not null default false,
  report jsonb not null,
  constraint stripe_reconciliation_run_report_is_object check (jsonb_typeof(report) = 'object')
);

create index stripe_reconciliation_run_started_at_idx on credit_private.stripe_reconciliation_run (started_at);

alter table credit_private.stripe_reconciliation_run enable row level security;
revoke all on credit_private.stripe_reconciliation_run from public, anon, authenticated, service_role;

comment on table credit_private.stripe_reconciliation_run is
  'One row per reconciliation run with its full JSON report (what was found in Stripe and what was done), for monitoring and audits.';

create function public.get_stripe_reconciliation_state()
returns jsonb
language sql
stable
-- Definer: the state lives in credit_private, which no API role may read.
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'watermark', (select s.events_watermark from credit_private.stripe_reconciliation_state s),
    'updated_at', (select s.updated_at from credit_private.stripe_reconciliation_state s),
    'last_run', (
      select jsonb_build_object('id', r.id, 'started_at', r.started_at, 'finished_at', r.finished_at,
                                'ok', r.ok, 'dry_run', r.dry_run)
      from credit_private.stripe_reconciliation_run r
      order by r.started_at desc, r.id desc
      limit 1
    )
  )
$$;

revoke execute on function public.get_stripe_reconciliation_state() from public, anon, authenticated;
grant execute on function public.get_stripe_reconciliation_state() to service_role;

comment on function public.get_stripe_reconciliation_state() is
  'The reconciliation watermark (null before the first run), when it moved, and the last run: {watermark, updated_at, last_run}.';

create function public.advance_stripe_reconciliation_watermark(watermark timestamptz)
returns jsonb
language plpgsql
-- Definer: the state lives in credit_private, which no API role may write.
security definer
set search_path = ''
as $$
declare
  v_state credit_private.stripe_reconciliation_state;
begin
  if advance_stripe_reconciliation_watermark.watermark is null
     or advance_stripe_reconciliation_watermark.watermark > now() then
    raise exception 'watermark must be a time in the past' using errcode = '22023';
  end if;

  -- greatest(): two runs finishing in any order leave the later verified point.
  insert into credit_private.stripe_reconciliation_state as s (id, events_watermark)
  values (true, advance_stripe_reconciliation_watermark.watermark)
  on conflict (id) do update
    set events_watermark = greatest(s.events_watermark, excluded.events_watermark),
        updated_at = case when excluded.events_watermark > s.events_watermark then now() else s.updated_at end
  returning * into v_state;

  return jsonb_build_object(
    'watermark', v_state.events_watermark,
    'advanced', v_state.events_watermark = advance_stripe_reconciliation_watermark.watermark
  );
end;
$$;

revoke execute on function public.advance_stripe_reconciliation_watermark(timestamptz) from public, anon, authenticated;
grant execute on function public.advance_stripe_reconciliation_watermark(timestamptz) to service_role;

comment on function public.advance_stripe_reconciliation_watermark(timestamptz) is
  'Moves the watermark forward to the given time (never backward, never into the future); returns {watermark, advanced}. Call it only with a time before which every listed event is settled.';

create function public.record_stripe_reconciliation_run(report jsonb)
returns bigint
language plpgsql
-- Definer: the run log lives in credit_private, which no API role may write.
security definer
set search_path = ''
as $$
declare
  v_id bigint;
begin
  if jsonb_typeof(record_stripe_reconciliation_run.report) is distinct from 'object' then
    raise exception 'report must be a JSON object' using errcode = '22023';
  end if;

  insert into credit_private.stripe_reconciliation_run (started_at, ok, dry_run, report)
  values (
    coalesce((record_stripe_reconciliation_run.report ->> 'startedAt')::timestamptz, now()),
    coalesce((record_stripe_reconciliation_run.report ->> 'ok')::boolean, false),
    coalesce((record_stripe_reconciliation_run.report ->> 'dryRun')::boolean, false),
    record_stripe_reconciliation_run.report
  )
  returning id into v_id;
  return v_id;
end;
$$;

revoke execute on function public.record_stripe_reconciliation_run(jsonb) from public, anon, authenticated;
grant execute on function public.record_stripe_reconciliation_run(jsonb) to service_role;

comment on function public.record_stripe_reconciliation_run(jsonb) is
  'Stores a reconciliation report (startedAt, ok and dryRun read from it); returns the run id.';
