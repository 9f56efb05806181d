-- Repair the Stripe credits package in one transaction: restore missing policies, grants and
-- cron jobs, retry failed webhook events, back-fill missing recharge entries, recompute
-- balances from the ledger (public.fix_all_credits). Prints what it did; run twice, the second
-- run reports nothing to do. Every change is written to credit_private.repair_log.
--
--   psql "$SUPABASE_DB_URL" -v actor='alice@example.com' -v reason='ticket 123' \
--     -f supabase/scripts/fix_payment_credits_manual.sql
--   add -v dry_run=true to see what it would do without changing anything.
--
-- Run it as postgres (the dashboard's connection string). What no payment justifies
-- (dangling entries, stuck recharges, negative balances) is listed at the end, not changed.
\set ON_ERROR_STOP on
\set QUIET on
\pset pager off
\pset null '-'
\if :{?actor}
\else
  \set actor 'psql:' :USER
\endif
\if :{?reason}
\else
  \set reason 'supabase/scripts/fix_payment_credits_manual.sql'
\endif
\if :{?dry_run}
\else
  \set dry_run false
\endif

select public.fix_all_credits(dry_run => :'dry_run'::boolean, actor => :'actor', reason => :'reason') as result \gset

\echo
\echo '== Stripe credits repair'
select r ->> 'run_id' as run_id,
  case when (r ->> 'dry_run')::boolean then 'DRY RUN: nothing was changed' else 'applied' end as mode,
  r ->> 'actor' as actor, r ->> 'reason' as reason,
  case when (r ->> 'nothing_to_do')::boolean then 'nothing to do'
    else format('%s change(s), %s audit row(s) in credit_private.repair_log', r ->> 'changed', r ->> 'logged')
  end as result
from (select :'result'::jsonb as r) x;

\echo
\echo '== Steps, in order'
select s.position as step, s.body ->> 'action' as action, (s.body ->> 'changed')::integer as changed,
  jsonb_array_length(s.body -> 'skipped') as skipped_for_a_human
from jsonb_array_elements(:'result'::jsonb -> 'steps') with ordinality as s (body, position)
order by s.position;

\echo '== Changes'
select s.body ->> 'action' as action, c ->> 'target_type' as target_type, c ->> 'target_id' as target_id,
  c ->> 'user_id' as user_id, c -> 'before' as before, c -> 'after' as after, c ->> 'detail' as detail
from jsonb_array_elements(:'result'::jsonb -> 'steps') with ordinality as s (body, position),
  jsonb_array_elements(s.body -> 'changes') as c
order by s.position;

\echo '== Skipped: needs a human'
select s.body ->> 'action' as action, k ->> 'target_type' as target_type, k ->> 'target_id' as target_id,
  k ->> 'reason' as reason
from jsonb_array_elements(:'result'::jsonb -> 'steps') with ordinality as s (body, position),
  jsonb_array_elements(s.body -> 'skipped') as k
order by s.position;

\echo '== Still reported after the repair (never repaired automatically; see diagnose_payment_issues.sql)'
select c.category, (d.report #>> array['counts', c.category])::bigint as count
from (select public.diagnose_credits(max_rows => 0) as report) d,
  unnest(array['orphaned_recharges', 'dangling_recharge_entries', 'balance_mismatches', 'failed_webhooks',
    'stuck_recharges', 'negative_balances', 'installation']) with ordinality as c (category, position)
order by c.position;
