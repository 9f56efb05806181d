-- Demo data for local development (loaded by `npm start` on a fresh database, and by
-- `supabase db reset` where the CLI is used). Two users; Alice bought 500 credits and spent
-- 120, through the same RPCs production uses, so the three tables agree.

insert into auth.users (id, email)
values
  ('00000000-0000-4000-8000-00000000a11c', 'alice@example.com'),
  ('00000000-0000-4000-8000-000000000b0b', 'bob@example.com')
on conflict (id) do nothing;

select public.handle_stripe_event(jsonb_build_object(
  'id', 'evt_seed_alice_checkout',
  'object', 'event',
  'type', 'checkout.session.completed',
  'created', extract(epoch from now())::bigint,
  'livemode', false,
  'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'cs_test_seed_alice',
    'object', 'checkout.session',
    'client_reference_id', '00000000-0000-4000-8000-00000000a11c',
    'payment_status', 'paid',
    'payment_intent', 'pi_seed_alice',
    'amount_total', 500,
    'currency', 'usd',
    'metadata', jsonb_build_object('credits', '500')
  ))
));

select public.spend_credits('00000000-0000-4000-8000-00000000a11c', 120, 'seed-alice-first-spend', 'Demo spend');

-- Packages on sale. The price ids are placeholders: replace them with your Stripe Prices.
insert into public.credit_packages (name, description, stripe_price_id, credits, amount_cents, currency, sort_order)
values
  ('Starter', '100 credits', 'price_local_starter_100', 100, 199, 'usd', 1),
  ('Standard', '500 credits', 'price_local_standard_500', 500, 799, 'usd', 2),
  ('Pro', '2,000 credits', 'price_local_pro_2000', 2000, 2499, 'usd', 3)
on conflict (stripe_price_id) do nothing;
