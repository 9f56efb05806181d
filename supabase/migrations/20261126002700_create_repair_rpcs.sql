-- Why: the repairs are called by the admin endpoint (service_role), by pg_cron and from the
-- dashboard's SQL editor (postgres). Each RPC is a thin SECURITY DEFINER entry to
-- credit_private.run_repair, with named arguments for PostgREST, dry_run on by default, and
-- the actor and reason the audit log needs. Target null means "all".

create function public.fix_orphaned_recharges(
  recharge_id uuid default null,
  dry_run boolean default true,
  actor text default null,
  reason text default null
)
returns jsonb
language sql
-- Definer: the repair writes the ledger and the private schema, which service_role may not.
security definer
set search_path = ''
as $$
  select credit_private.run_repair('fix_orphaned_recharges', fix_orphaned_recharges.recharge_id::text,
    fix_orphaned_recharges.dry_run, fix_orphaned_recharges.actor, fix_orphaned_recharges.reason)
$$;

revoke execute on function public.fix_orphaned_recharges(uuid, boolean, text, text) from public, anon, authenticated;
grant execute on function public.fix_orphaned_recharges(uuid, boolean, text, text) to service_role;

comment on function public.fix_orphaned_recharges(uuid, boolean, text, text) is
  'Back-fills the missing recharge ledger entry of one credited recharge (recharge_id) or of all orphaned recharges (null), through the webhook''s own crediting path; never credits a recharge that was not paid. dry_run (default true) reports and changes nothing; a real run needs actor and reason. Returns {run_id, dry_run, actor, reason, logged, action, changed, nothing_to_do, changes[], skipped[]}. Errors: PT404 (HTTP 404) unknown recharge, 22023 bad arguments.';

create function public.recompute_credit_balances(
  user_id uuid default null,
  dry_run boolean default true,
  actor text default null,
  reason text default null
)
returns jsonb
language sql
-- Definer: the repair rewrites user_credit_balance, which service_role may only read.
security definer
set search_path = ''
as $$
  select credit_private.run_repair('recompute_balances', recompute_credit_balances.user_id::text,
    recompute_credit_balances.dry_run, recompute_credit_balances.actor, recompute_credit_balances.reason)
$$;

revoke execute on function public.recompute_credit_balances(uuid, boolean, text, text) from public, anon, authenticated;
grant execute on function public.recompute_credit_balances(uuid, boolean, text, text) to service_role;

comment on function public.recompute_credit_balances(uuid, boolean, text, text) is
  'Rewrites the cached balance and total_recharged of one user (user_id) or of every mismatched user (null) to the ledger sums, under the balance row lock; writes no ledger entry. dry_run (default true) reports and changes nothing; a real run needs actor and reason. Same result shape as fix_orphaned_recharges. Errors: PT404 (HTTP 404) unknown user, 22023 bad arguments.';

create function public.retry_failed_webhooks(
  event_id text default null,
  dry_run boolean default true,
  actor text default null,
  reason text default null
)
returns jsonb
language sql
-- Definer: retrying reads the private inbox and applies events to the ledger.
security definer
set search_path = ''
as $$
  select credit_private.run_repair('retry_failed_webhooks', retry_failed_webhooks.event_id,
    retry_failed_webhooks.dry_run, retry_failed_webhooks.actor, retry_failed_webhooks.reason)
$$;

revoke execute on function public.retry_failed_webhooks(text, boolean, text, text) from public, anon, authenticated;
grant execute on function public.retry_failed_webhooks(text, boolean, text, text) to service_role;

comment on function public.retry_failed_webhooks(text, boolean, text, text) is
  'Re-applies one stored Stripe event (event_id) or every failed one and every one received but unprocessed for longer than settings.failed_webhook_age (null; failed events whose SQLSTATE is in settings.retry_skip_error_codes are listed as skipped) from its verified payload, exactly-once, through the webhook''s own path. dry_run (default true) reports the outcome each retry would have and changes nothing; a real run needs actor and reason. Result adds still_failing. Errors: PT404 (HTTP 404) unknown event, 22023 bad arguments.';

create function public.restore_credit_installation(
  dry_run boolean default true,
  actor text default null,
  reason text default null
)
returns jsonb
language sql
-- Definer: restoring grants, policies and cron jobs needs the objects' owner.
security definer
set search_path = ''
as $$
  select credit_private.run_repair('restore_installation', null,
    restore_credit_installation.dry_run, restore_credit_installation.actor, restore_credit_installation.reason)
$$;

revoke execute on function public.restore_credit_installation(boolean, text, text) from public, anon, authenticated;
grant execute on function public.restore_credit_installation(boolean, text, text) to service_role;

comment on function public.restore_credit_installation(boolean, text, text) is
  'Restores every policy, grant, RLS switch, SECURITY DEFINER / search_path setting and cron job the package expects (credit_private.expected_object); lists what only a migration or a human can fix as skipped. dry_run (default true) reports and changes nothing; a real run needs actor and reason.';

create function public.fix_all_credits(
  dry_run boolean default true,
  actor text default null,
  reason text default null
)
returns jsonb
language sql
-- Definer: runs every repair above.
security definer
set search_path = ''
as $$
  select credit_private.run_repair('fix_all', null,
    fix_all_credits.dry_run, fix_all_credits.actor, fix_all_credits.reason)
$$;

revoke execute on function public.fix_all_credits(boolean, text, text) from public, anon, authenticated;
grant execute on function public.fix_all_credits(boolean, text, text) to service_role;

comment on function public.fix_all_credits(boolean, text, text) is
  'Runs the safe repairs in one transaction, in order: restore installation, retry failed webhooks, back-fill orphaned recharges, recompute balances; returns {run_id, dry_run, actor, reason, logged, action: fix_all, changed, nothing_to_do, steps[4], not_repaired}. Dangling entries, stuck recharges and negative balances are only reported (diagnose_credits). dry_run (default true) shows exactly what a real run would do, changing nothing; a real run needs actor and reason. A second run reports nothing_to_do.';
