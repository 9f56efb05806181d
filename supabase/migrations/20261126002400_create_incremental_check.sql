-- Why: a monitor that runs every 15 minutes cannot re-read a ledger of ten million entries
-- each time. This check looks only at what changed since its previous run, found by index
-- range scans from a watermark kept per checker, so its cost follows the traffic of the last
-- minutes and not the size of the tables:
--   ledger entries   credit_transaction.created_at > from  (credit_transaction_created_at_idx)
--     -> the users they touch: balance (per user by credit_transaction_user_id_created_at_idx),
--        negative balance (user_credit_balance_pkey); new recharge entries: dangling?
--   recharges        credit_recharge.updated_at > from     (credit_recharge_updated_at_idx)
--     -> orphaned? (credit_transaction_one_recharge_entry_idx), dangling?
--   pending recharges that crossed the stuck threshold      (credit_recharge_pending_created_at_idx)
--   inbox events that failed, or crossed a threshold        (stripe_webhook_event_unfinished_idx)
--   installation                                            (catalog only)
-- from = previous watermark - settings.incremental_overlap, so rows of transactions that
-- started before a run and committed after it are still seen (created_at is set at the
-- writer's transaction start). What leaves no changed row behind (a deleted ledger entry, a
-- hand-edited balance that kept its updated_at) is found by the full diagnosis only.

create table credit_private.check_watermark (
  checker text primary key,
  checked_through timestamptz not null,
  last_run_at timestamptz not null,
  last_counts jsonb,
  constraint check_watermark_checker_not_blank check (btrim(checker) <> '')
);

alter table credit_private.check_watermark enable row level security;
revoke all on credit_private.check_watermark from public, anon, authenticated, service_role;

comment on table credit_private.check_watermark is
  'Per checker (e.g. monitor), the time through which the incremental check has looked at changes, the time of its last run and the counts it reported. The next run looks at rows changed after checked_through - settings.incremental_overlap.';

create function public.diagnose_credits_incremental(
  checker text default 'monitor',
  advance boolean default true,
  max_rows integer default null
)
returns jsonb
language plpgsql
-- Definer: reads every user's rows and the private schema, and moves the checker's watermark,
-- none of which service_role may do directly.
security definer
set search_path = ''
as $$
declare
  v_settings credit_private.settings := credit_private.current_settings();
  v_max integer := coalesce(diagnose_credits_incremental.max_rows, v_settings.max_report_rows::integer);
  v_watermark credit_private.check_watermark;
  v_to timestamptz := now();
  v_from timestamptz;
  v_users uuid[];
  v_entries uuid[];
  v_recharges uuid[];
  v_report jsonb;
begin
  if coalesce(btrim(diagnose_credits_incremental.checker), '') = '' then
    raise exception 'checker is required' using errcode = '22023';
  end if;
  if diagnose_credits_incremental.advance is null then
    raise exception 'advance must be true or false' using errcode = '22023';
  end if;
  if v_max < 0 then
    raise exception 'max_rows must not be negative, got %', v_max using errcode = '22023';
  end if;

  -- One run per checker at a time: the second waits and then starts from the first's watermark.
  if diagnose_credits_incremental.advance then
    insert into credit_private.check_watermark (checker, checked_through, last_run_at)
    values (diagnose_credits_incremental.checker, v_to - v_settings.incremental_first_lookback, v_to)
    on conflict on constraint check_watermark_pkey do nothing;
    select * into strict v_watermark
    from credit_private.check_watermark w
    where w.checker = diagnose_credits_incremental.checker
    for update;
  else
    select * into v_watermark
    from credit_private.check_watermark w
    where w.checker = diagnose_credits_incremental.checker;
  end if;
  v_from := coalesce(v_watermark.checked_through, v_to - v_settings.incremental_first_lookback)
    - v_settings.incremental_overlap;

  select array_agg(distinct t.user_id), array_agg(t.id) filter (where t.type = 'recharge')
  into v_users, v_entries
  from public.credit_transaction t
  where t.created_at > v_from;

  select array_agg(r.id)
  into v_recharges
  from public.credit_recharge r
  where r.updated_at > v_from;

  v_report := credit_private.report('incremental', jsonb_build_object(
    'orphaned_recharges', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.completed_at, v.recharge_id), v_max)
      from credit_private.orphaned_recharges v
      where v.recharge_id = any (v_recharges)),
    'dangling_recharge_entries', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.created_at, v.transaction_id), v_max)
      from credit_private.dangling_recharge_entries v
      where v.transaction_id = any (v_entries) or v.recharge_id = any (v_recharges)),
    'balance_mismatches', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.user_id), v_max)
      from credit_private.balance_mismatches_for(v_users) v),
    'failed_webhooks', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.received_at, v.event_id), v_max)
      from credit_private.failed_webhooks v
      where v.updated_at > v_from
        or (v.status = 'received' and v.received_at > v_from - v_settings.failed_webhook_age)
        or (v.status = 'deferred' and v.received_at > v_from - v_settings.deferred_webhook_age)),
    'stuck_recharges', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.created_at, v.recharge_id), v_max)
      from credit_private.stuck_recharges v
      where v.created_at > v_from - v_settings.stuck_recharge_age),
    'negative_balances', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.balance, v.user_id), v_max)
      from credit_private.negative_balances v
      where v.user_id = any (v_users)),
    'installation', credit_private.installation_category(v_max)
  ), jsonb_build_object(
    'checker', diagnose_credits_incremental.checker,
    'window', jsonb_build_object('from', v_from, 'to', v_to),
    'advanced', diagnose_credits_incremental.advance,
    'changed', jsonb_build_object(
      'users', coalesce(cardinality(v_users), 0),
      'recharge_entries', coalesce(cardinality(v_entries), 0),
      'recharges', coalesce(cardinality(v_recharges), 0))
  ));

  if diagnose_credits_incremental.advance then
    update credit_private.check_watermark w
    set checked_through = v_to, last_run_at = now(), last_counts = v_report -> 'counts'
    where w.checker = diagnose_credits_incremental.checker;
  end if;
  return v_report;
end;
$$;

revoke execute on function public.diagnose_credits_incremental(text, boolean, integer) from public, anon, authenticated;
grant execute on function public.diagnose_credits_incremental(text, boolean, integer) to service_role;

comment on function public.diagnose_credits_incremental(text, boolean, integer) is
  'The 15-minute monitor''s check: the same report as diagnose_credits (scope incremental, plus checker, window {from, to}, changed counts) restricted to rows changed since the checker''s watermark minus settings.incremental_overlap, each category found by index, so its cost does not grow with the tables. advance (default true) moves the watermark to this run''s start; false only looks. Deleted entries and hand edits that leave no changed row are found by the full diagnosis only.';
