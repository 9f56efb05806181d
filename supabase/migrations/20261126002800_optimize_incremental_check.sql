-- Why: the 15-minute monitor's check must cost the same at 100,000 and at 10,000,000 ledger
-- entries (issue 3), but bench-scale measured 49 ms and 138 ms for the same new activity.
-- Three things in public.diagnose_credits_incremental grew with the tables:
--   orphaned_recharges: the view, restricted by recharge_id = any (changed recharges), was
--     flattened into one anti-join that the planner ran as a merge anti join reading the whole
--     credit_transaction_one_recharge_entry_idx (every recharge entry ever) to test a few
--     hundred recharges. Each changed recharge is now probed on its own (lateral, offset 0):
--     its row by primary key, its entry by the recharge-entry index.
--   negative_balances: restricted by user_id = any (changed users), it became a sequential
--     scan of user_credit_balance (every user) once a few thousand users had changed. Each
--     changed user is now probed by primary key.
--   JIT: the plan's estimated cost grows with the tables' statistics; past jit_above_cost the
--     statement was JIT-compiled on every run (~45 ms at 5,000,000 entries). JIT is off for
--     this function, as it is for diagnose_credits.
-- dangling_recharge_entries is probed the same way (changed entries, plus the recharge entries
-- of changed recharges, each by primary key) rather than through an OR across two arrays,
-- which only a BitmapOr plan kept index-driven. Same report, same rows, same signature, grants
-- and comment; only how the rows are found changes.

create or replace function public.diagnose_credits_incremental(
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
-- JIT off: the planner's cost of these index probes grows with the tables' statistics until it
-- crosses jit_above_cost (about 5,000,000 entries), and compiling then costs ~45 ms, more than
-- running the whole check.
set jit = off
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
      -- One probe per changed recharge (pkey, then its entry by
      -- credit_transaction_one_recharge_entry_idx): offset 0 keeps the view from being
      -- flattened into one anti-join, which the planner runs as a merge join over the whole
      -- recharge-entry index.
      from unnest(v_recharges) as c (recharge_id)
        cross join lateral (
          select o.* from credit_private.orphaned_recharges o where o.recharge_id = c.recharge_id offset 0
        ) v),
    'dangling_recharge_entries', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.created_at, v.transaction_id), v_max)
      -- The changed recharge entries, and the recharge entries of the changed recharges
      -- (credit_transaction_one_recharge_entry_idx), each probed by primary key.
      from (
          select e.id from unnest(v_entries) as e (id)
          union
          select t.id
          from unnest(v_recharges) as r (id)
            join public.credit_transaction t on t.recharge_id = r.id and t.type = 'recharge'
        ) c
        cross join lateral (
          select d.* from credit_private.dangling_recharge_entries d where d.transaction_id = c.id offset 0
        ) v),
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
      -- One probe per changed user (user_credit_balance_pkey), for the same reason.
      from unnest(v_users) as u (user_id)
        cross join lateral (
          select n.* from credit_private.negative_balances n where n.user_id = u.user_id offset 0
        ) v),
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
