-- New traffic between two monitor checks: one paid Checkout Session of 100 credits for each
-- generated user number :first_user to :last_user, through the same RPC as the webhook, so the
-- incremental check has fresh rows to look at. Deterministic (ids and users follow the user
-- number), so the small and the large ledger get the same traffic: with users that each have
-- the generated history only, every session adds one recharge, one recharge entry and one
-- changed user.
\set ON_ERROR_STOP on
select count(public.handle_stripe_event(jsonb_build_object(
  'id', 'evt_scale_new_' || n, 'object', 'event', 'type', 'checkout.session.completed',
  'created', extract(epoch from now())::bigint, 'livemode', false,
  'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'cs_scale_new_' || n, 'object', 'checkout.session',
    'client_reference_id', md5('u' || n)::uuid,
    'payment_status', 'paid', 'payment_intent', 'pi_scale_new_' || n,
    'amount_total', 100, 'currency', 'usd', 'metadata', jsonb_build_object('credits', '100'))))))
from generate_series(:first_user, :last_user) n;
