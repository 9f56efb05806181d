-- Why: the diagnosis and repair objects are part of the installation too: a revoked grant on
-- diagnose_credits or a view readable by authenticated must show up in the installation check
-- like any core object, and be restored the same way.

select credit_private.expect_table(t, '{}', '20261126002750_register_repair_expected_objects')
from unnest(array[
  'credit_private.settings', 'credit_private.repair_log', 'credit_private.expected_object',
  'credit_private.check_watermark'
]::regclass[]) as t;

select credit_private.expect_view(v, '{}', '20261126002750_register_repair_expected_objects')
from unnest(array[
  'credit_private.installation_check', 'credit_private.inbox_permission_errors',
  'credit_private.orphaned_recharges', 'credit_private.dangling_recharge_entries',
  'credit_private.balance_mismatches', 'credit_private.failed_webhooks',
  'credit_private.stuck_recharges', 'credit_private.negative_balances'
]::regclass[]) as v;

-- The RPCs: SECURITY DEFINER, for the backend (service_role) only; postgres owns them.
select credit_private.expect_function(f, true, '{service_role}', '20261126002750_register_repair_expected_objects')
from unnest(array[
  'public.diagnose_credits(integer)',
  'public.diagnose_credits_incremental(text,boolean,integer)',
  'public.fix_orphaned_recharges(uuid,boolean,text,text)',
  'public.recompute_credit_balances(uuid,boolean,text,text)',
  'public.retry_failed_webhooks(text,boolean,text,text)',
  'public.restore_credit_installation(boolean,text,text)',
  'public.fix_all_credits(boolean,text,text)'
]::regprocedure[]) as f;

-- The internals: SECURITY INVOKER, executable by no API role.
select credit_private.expect_function(f, false, '{}', '20261126002750_register_repair_expected_objects')
from unnest(array[
  'credit_private.current_settings()',
  'credit_private.relation_privileges(regclass)',
  'credit_private.normalize_privileges(jsonb)',
  'credit_private.policy_definition(regclass,text)',
  'credit_private.expected_object_problems(text,text)',
  'credit_private.installation_problems()',
  'credit_private.register_expected_object(text,text,jsonb,text,boolean)',
  'credit_private.expect_schema(text,text[],text)',
  'credit_private.expect_table(regclass,jsonb,text)',
  'credit_private.expect_view(regclass,jsonb,text)',
  'credit_private.expect_policy(regclass,text,text)',
  'credit_private.expect_function(regprocedure,boolean,text[],text)',
  'credit_private.expect_cron_job(text,text,text,text)',
  'credit_private.ledger_totals(uuid)',
  'credit_private.balance_mismatches_for(uuid[])',
  'credit_private.category_json(jsonb[],integer)',
  'credit_private.installation_category(integer)',
  'credit_private.report(text,jsonb,jsonb)',
  'credit_private.fix_orphaned_recharges(uuid)',
  'credit_private.recompute_balances(uuid)',
  'credit_private.retry_failed_webhooks(text)',
  'credit_private.restore_expected_object(text,text)',
  'credit_private.restore_installation()',
  'credit_private.fix_all()',
  'credit_private.perform_repair(text,text)',
  'credit_private.run_repair(text,text,boolean,text,text)'
]::regprocedure[]) as f;
