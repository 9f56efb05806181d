-- Why: the installation check must know what the core ledger (migrations 0000-1999) put in
-- place: the private schema closed to the API roles, RLS and read-only grants on the three
-- public tables, the inbox closed to everyone, the three read policies, and every function
-- with its security mode and its callers. Registered explicitly, one by one, so that the
-- list says what the package expects rather than whatever happens to exist.

select credit_private.expect_schema('credit_private', '{}', '20261126002200_register_core_expected_objects');

-- Policies first: a table's check flags every policy on it that is not registered.
select credit_private.expect_policy(p.table_name, p.policy_name, '20261126002200_register_core_expected_objects')
from (values
  ('public.credit_recharge'::regclass, 'Users can read their own recharges'),
  ('public.credit_transaction'::regclass, 'Users can read their own credit transactions'),
  ('public.user_credit_balance'::regclass, 'Users can read their own credit balance')
) as p (table_name, policy_name);

select credit_private.expect_table(t, '{"authenticated": ["SELECT"], "service_role": ["SELECT"]}',
  '20261126002200_register_core_expected_objects')
from unnest(array[
  'public.credit_recharge', 'public.credit_transaction', 'public.user_credit_balance'
]::regclass[]) as t;

select credit_private.expect_table('credit_private.stripe_webhook_event', '{}',
  '20261126002200_register_core_expected_objects');

-- The two RPCs: SECURITY DEFINER, for the backend (service_role) only.
select credit_private.expect_function(f, true, '{service_role}', '20261126002200_register_core_expected_objects')
from unnest(array[
  'public.handle_stripe_event(jsonb)',
  'public.spend_credits(uuid,bigint,text,text)'
]::regprocedure[]) as f;

-- The internals: SECURITY INVOKER, reached only through the RPCs, executable by no API role.
select credit_private.expect_function(f, false, '{}', '20261126002200_register_core_expected_objects')
from unnest(array[
  'credit_private.post_ledger_entry(uuid,text,bigint,text,uuid,text)',
  'credit_private.lock_payment(text)',
  'credit_private.post_recharge_entry(public.credit_recharge)',
  'credit_private.credit_recharge(uuid)',
  'credit_private.checkout_buyer(jsonb)',
  'credit_private.checkout_credits(jsonb)',
  'credit_private.check_session_matches_recharge(jsonb,public.credit_recharge)',
  'credit_private.apply_checkout_session_event(text,jsonb)',
  'credit_private.credited_recharge_for_payment(text)',
  'credit_private.proportional_credits(bigint,bigint,bigint)',
  'credit_private.apply_charge_refunded(jsonb)',
  'credit_private.hold_disputed_credits(public.credit_recharge,jsonb)',
  'credit_private.apply_dispute_event(text,jsonb)',
  'credit_private.apply_stripe_event(jsonb)',
  'credit_private.process_stripe_event(text)'
]::regprocedure[]) as f;
