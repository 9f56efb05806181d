-- Why: the checkout and reconciliation objects (migrations 6000-6699) are part of the
-- installation: a dropped policy on credit_packages or a definer RPC opened to anon must show
-- up in the installation check, and be restored, like any core object. The reconciliation's
-- cron job is not registered: it is scheduled only where pg_net and Vault exist.

select credit_private.expect_policy('public.credit_packages', 'Authenticated users can read the credit packages',
  '20261126006700_register_reconciliation_expected_objects');

select credit_private.expect_table('public.credit_packages',
  '{"authenticated": ["SELECT"], "service_role": ["SELECT"]}',
  '20261126006700_register_reconciliation_expected_objects');

select credit_private.expect_table(t, '{}', '20261126006700_register_reconciliation_expected_objects')
from unnest(array[
  'credit_private.stripe_reconciliation_state', 'credit_private.stripe_reconciliation_run',
  'credit_private.pending_recharge_check'
]::regclass[]) as t;

-- Read as the signed-in user, so that PostgREST checks the JWT and RLS applies.
select credit_private.expect_function('public.get_checkout_package(uuid)', false, '{authenticated}',
  '20261126006700_register_reconciliation_expected_objects');

select credit_private.expect_function(f, true, '{service_role}', '20261126006700_register_reconciliation_expected_objects')
from unnest(array[
  'public.record_pending_recharge(uuid,text,bigint,bigint,text)',
  'public.get_stripe_reconciliation_state()',
  'public.advance_stripe_reconciliation_watermark(timestamptz)',
  'public.record_stripe_reconciliation_run(jsonb)',
  'public.get_stripe_event_statuses(text[])',
  'public.list_stale_pending_recharges(interval,integer)',
  'public.resolve_pending_recharge(uuid,jsonb,boolean)',
  'public.replay_stripe_event(text)'
]::regprocedure[]) as f;

select credit_private.expect_function(f, false, '{}', '20261126006700_register_reconciliation_expected_objects')
from unnest(array[
  'credit_private.checkout_session_outcome(jsonb)',
  'credit_private.schedule_stripe_reconciliation(text)',
  'credit_private.unschedule_stripe_reconciliation()'
]::regprocedure[]) as f;
