-- New traffic between two monitor checks: :events paid Checkout Sessions for generated users,
-- through the same RPC as the webhook, so the incremental check has fresh rows to look at.
\set ON_ERROR_STOP on
select count(public.handle_stripe_event(jsonb_build_object(
  'id', 'evt_scale_' || x, 'object', 'event', 'type', 'checkout.session.completed',
  'created', extract(epoch from now())::bigint, 'livemode', false,
  'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'cs_scale_new_' || x, 'object', 'checkout.session',
    'client_reference_id', md5('u' || (1 + (abs(hashtext(x)) % 10000)))::uuid,
    'payment_status', 'paid', 'payment_intent', 'pi_scale_new_' || x,
    'amount_total', 100, 'currency', 'usd', 'metadata', jsonb_build_object('credits', '100'))))))
from (select gen_random_uuid()::text as x from generate_series(1, :events)) s;
