-- Why: the 15-minute monitor's check must cost the same at 100,000 and at 10,000,000 ledger
-- entries (issue 3). Measured with the same new traffic at both sizes (200 paid sessions, so
-- 200 changed users, recharges and recharge entries per check), it still cost ~1.26x more on
-- the large ledger (39.3 against 31.3 ms, against 200,000 entries), and two thirds of the
-- difference was in orphaned_recharges and dangling_recharge_entries: each changed recharge
-- and entry was looked up again by primary key (and the entry of each changed recharge by
-- credit_transaction_one_recharge_entry_idx), about 20 buffer accesses per changed recharge.
-- The buffers read barely grow (one more B-tree level), but on a large ledger every lookup
-- lands on pages no other lookup touches: a check runs in a fresh backend (pg_cron starts one
-- per run), and each shared-buffer page a backend touches for the first time costs a page
-- fault and cache misses. On the same 200 recharges, the lookups of orphaned_recharges took
-- 775 minor page faults and 6 ms at 10M entries against 244 and 3 ms at 200,000; repeated in
-- the same backend, 1.5 ms against 1.2 ms.
--
-- The changed rows were already read once, by the range scans that find them (created_at and
-- updated_at from the watermark); they are recent, so they sit together at the end of the
-- table and of those indexes. This version reads them there once more, in the report's own
-- statement (so every decision uses that statement's snapshot, as the per-row probes did),
-- groups them by recharge id (one hash or sort aggregate, no join, so a poor row estimate for
-- a range can never become a nested loop of changed rows against changed rows) and settles
-- the common case in memory:
--   orphaned_recharges: a changed recharge that is not credited, or whose recharge entry is
--     among the changed entries, cannot be orphaned; only the others are probed, as before.
--   dangling_recharge_entries: the recharge entry of a changed recharge is taken from the
--     changed entries when it is there (at most one recharge entry per recharge, by
--     credit_transaction_one_recharge_entry_idx), else looked up as before; an entry whose
--     recharge is among the changed recharges and is credited, to the same user, for the
--     same credits, is not dangling; only the others are probed, as before.
-- Every finding still comes from the category's view, probed by primary key: same rows, same
-- columns, same order. Rows the re-read does not return (moved out of the window, deleted)
-- fall back to the probes. balance_mismatches (every entry of each changed user, which it
-- must sum) and negative_balances are unchanged. Same report, signature, grants and comment.

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

  -- What changed: the rows this run examines (and counts in the report).
  select array_agg(distinct t.user_id), array_agg(t.id) filter (where t.type = 'recharge')
  into v_users, v_entries
  from public.credit_transaction t
  where t.created_at > v_from;

  select array_agg(r.id)
  into v_recharges
  from public.credit_recharge r
  where r.updated_at > v_from;

  with
    -- Per recharge id, in one pass and without joins (so a poor row estimate for the range
    -- scans can never turn into a nested loop of changed rows against changed rows): is it a
    -- changed recharge this run examines, and what the changed recharges and the changed
    -- recharge entries, read again here by the same range scans (recent rows, next to each
    -- other) and with this statement's snapshot, say of it. A recharge has at most one
    -- recharge entry (credit_transaction_one_recharge_entry_idx).
    by_recharge as materialized (
      select k.recharge_id,
        coalesce(bool_or(k.examined), false) as examined,
        coalesce(bool_or(k.seen), false) as seen,
        coalesce(bool_or(k.credited), false) as credited,
        (array_agg(k.entry_id) filter (where k.entry_id is not null))[1] as entry_id,
        -- Its entry is justified: the recharge is credited, to the entry's user, for the
        -- entry's amount (what dangling_recharge_entries tests).
        coalesce(
          bool_or(k.credited)
            and (array_agg(k.user_id) filter (where k.seen))[1] = (array_agg(k.user_id) filter (where k.entry_id is not null))[1]
            and (array_agg(k.credits) filter (where k.seen))[1] = (array_agg(k.credits) filter (where k.entry_id is not null))[1],
          false) as entry_justified
      from (
          select c.recharge_id, true as examined, false as seen, false as credited,
            null::uuid as entry_id, null::uuid as user_id, null::bigint as credits
          from unnest(v_recharges) as c (recharge_id)
          union all
          select r.id, false, true, r.completed_at is not null, null, r.user_id, r.credits
          from public.credit_recharge r
          where r.updated_at > v_from
          union all
          select t.recharge_id, false, false, false, t.id, t.user_id, t.amount
          from public.credit_transaction t
          where t.created_at > v_from and t.type = 'recharge'
        ) k
      group by k.recharge_id
    )
  select credit_private.report('incremental', jsonb_build_object(
    'orphaned_recharges', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.completed_at, v.recharge_id), v_max)
      -- A changed recharge seen here not credited, or with its recharge entry among the
      -- changed entries, is not orphaned. The others are probed one by one (pkey, then
      -- credit_transaction_one_recharge_entry_idx): offset 0 keeps the view from being
      -- flattened into one anti-join, which the planner runs as a merge join over the whole
      -- recharge-entry index.
      from by_recharge c
        cross join lateral (
          select o.* from credit_private.orphaned_recharges o where o.recharge_id = c.recharge_id offset 0
        ) v
      where c.examined and not (c.seen and (not c.credited or c.entry_id is not null))),
    'dangling_recharge_entries', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.created_at, v.transaction_id), v_max)
      -- The changed recharge entries, and the recharge entries of the changed recharges, less
      -- those justified above, each probed by primary key. The entry of a changed recharge
      -- comes from the changed entries when there, else from
      -- credit_transaction_one_recharge_entry_idx.
      from (
          select k.id
          from (
              select e.id, true as examined, false as justified from unnest(v_entries) as e (id)
              union all
              select b.entry_id, b.examined, b.entry_justified from by_recharge b where b.entry_id is not null
            ) k
          group by k.id
          having bool_or(k.examined) and not bool_or(k.justified)
          union
          select t.id
          from by_recharge b
            join public.credit_transaction t on t.recharge_id = b.recharge_id and t.type = 'recharge'
          where b.examined and b.entry_id is null
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
  ))
  into v_report;

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
