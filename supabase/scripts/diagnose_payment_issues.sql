-- Diagnose the Stripe credits package: counts per category, then the rows of each category,
-- then the installation check (every policy, grant, function and cron job the package
-- expects). Changes nothing: it runs in a read-only transaction that is rolled back.
--
--   psql "$SUPABASE_DB_URL" -f supabase/scripts/diagnose_payment_issues.sql
--   psql ... -v max_rows=1000 -f supabase/scripts/diagnose_payment_issues.sql   (rows listed per category)
--
-- Run it as postgres (the dashboard's connection string). It reads public.diagnose_credits(),
-- the same report the admin endpoint returns, and the views in credit_private.
\set ON_ERROR_STOP on
\set QUIET on
\pset pager off
\pset null '-'
\if :{?max_rows}
\else
  \set max_rows 100
\endif

start transaction read only;

select public.diagnose_credits(max_rows => :max_rows) as report \gset

\echo
\echo '== Stripe credits diagnosis'
select r ->> 'generated_at' as generated_at,
  case when (r ->> 'ok')::boolean then 'OK: nothing to report' else 'PROBLEMS FOUND' end as result,
  r -> 'settings' as thresholds
from (select :'report'::jsonb as r) x;

\echo
\echo '== Counts per category'
select c.category, (:'report'::jsonb #>> array['counts', c.category])::bigint as count,
  case c.category
    when 'orphaned_recharges' then 'credited recharges without their ledger entry (repair: fix_orphaned_recharges)'
    when 'dangling_recharge_entries' then 'recharge entries no credited recharge justifies (reported only)'
    when 'balance_mismatches' then 'cached balances that differ from the ledger (repair: recompute_credit_balances)'
    when 'failed_webhooks' then 'Stripe events failed or not processed (repair: retry_failed_webhooks)'
    when 'stuck_recharges' then 'recharges pending too long (reported only)'
    when 'negative_balances' then 'balances below zero (reported only)'
    else 'missing or altered policies, grants, functions, cron jobs; permission errors (repair: restore_credit_installation)'
  end as meaning
from unnest(array['orphaned_recharges', 'dangling_recharge_entries', 'balance_mismatches', 'failed_webhooks',
  'stuck_recharges', 'negative_balances', 'installation']) with ordinality as c (category, position)
order by c.position;

\echo
\echo '== orphaned_recharges: paid (credited) recharges with no recharge ledger entry'
select f.recharge_id, f.user_id, f.credits, f.amount_cents, f.currency, f.status, f.stripe_checkout_session_id,
  f.completed_at, f.suggested_action
from jsonb_populate_recordset(null::credit_private.orphaned_recharges,
  :'report'::jsonb #> '{categories,orphaned_recharges,findings}') f;

\echo '== dangling_recharge_entries: recharge entries without a credited recharge'
select f.transaction_id, f.user_id, f.amount, f.recharge_id, f.recharge_status, f.problem, f.created_at
from jsonb_populate_recordset(null::credit_private.dangling_recharge_entries,
  :'report'::jsonb #> '{categories,dangling_recharge_entries,findings}') f;

\echo '== balance_mismatches: cached balance vs ledger (the ledger is the truth)'
select f.user_id, f.balance_row_missing, f.cached_balance, f.ledger_balance, f.cached_total_recharged,
  f.ledger_total_recharged, f.ledger_entries
from jsonb_populate_recordset(null::credit_private.balance_mismatches,
  :'report'::jsonb #> '{categories,balance_mismatches,findings}') f;

\echo '== failed_webhooks: Stripe events failed, or not processed in time'
select f.event_id, f.type, f.status, f.attempts, f.last_error_code, f.last_error, f.looks_like_permission_error,
  f.needs_a_human, f.received_at
from jsonb_populate_recordset(null::credit_private.failed_webhooks,
  :'report'::jsonb #> '{categories,failed_webhooks,findings}') f;

\echo '== stuck_recharges: pending longer than the threshold'
select f.recharge_id, f.user_id, f.credits, f.stripe_checkout_session_id, f.created_at, f.age, f.unfinished_event_id
from jsonb_populate_recordset(null::credit_private.stuck_recharges,
  :'report'::jsonb #> '{categories,stuck_recharges,findings}') f;

\echo '== negative_balances'
select f.user_id, f.balance, f.total_recharged, f.clawed_back, f.suggested_action
from jsonb_populate_recordset(null::credit_private.negative_balances,
  :'report'::jsonb #> '{categories,negative_balances,findings}') f;

\echo '== Suggested actions (one line per finding)'
select c.category, f.finding ->> 'suggested_action' as suggested_action, count(*) as findings
from jsonb_each(:'report'::jsonb -> 'categories') as c (category, body),
  jsonb_array_elements(c.body -> 'findings') as f (finding)
where c.category <> 'installation'
group by 1, 2
order by 1, 2;

\echo
\echo '== Installation check: every object the package expects'
select i.kind, i.name, case when i.ok then 'ok' else 'PROBLEM' end as status,
  array_to_string(i.problems, E'\n') as problems
from credit_private.installation_check i
order by i.ok, array_position(array['schema', 'table', 'view', 'policy', 'function', 'cron_job'], i.kind), i.name;

\echo '== Installation problems and what to do'
select f ->> 'kind' as kind, f ->> 'name' as name, f ->> 'problem' as problem, f ->> 'expected' as expected,
  f ->> 'actual' as actual, f ->> 'suggested_action' as suggested_action
from jsonb_array_elements(:'report'::jsonb #> '{categories,installation,findings}') as f;

\echo 'Nothing was changed. To repair: psql ... -f supabase/scripts/fix_payment_credits_manual.sql'
rollback;
