-- Benchmark fixtures, loaded as postgres into a throwaway database by scripts/bench.sh.
-- Lives in its own schema so the package's objects stay as migrations made them.
create schema bench;
create sequence bench.event_seq;

-- 10,000 buyers, and one hot user with a balance large enough for any run. Buyer n has the
-- uuid 00000000-0000-4000-8000-1000000nnnnn, so pgbench scripts can name one without a query.
create table bench.buyer as
select i as n, ('00000000-0000-4000-8000-' || (100000000000 + i))::uuid as id from generate_series(1, 10000) i;
insert into auth.users (id, email) select id, 'bench-' || n || '@bench.local' from bench.buyer;
create unique index on bench.buyer (n);

-- A checkout.session.completed event with fresh ids, for a buyer chosen by number.
create function bench.checkout_event(p_buyer bigint, p_credits bigint)
returns jsonb
language sql
set search_path = ''
as $$
  select jsonb_build_object(
    'id', 'evt_' || md5('e' || s.n), 'object', 'event', 'type', 'checkout.session.completed',
    'created', extract(epoch from now())::bigint, 'livemode', false,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'cs_' || md5('c' || s.n), 'object', 'checkout.session',
      'client_reference_id', b.id, 'payment_status', 'paid', 'payment_intent', 'pi_' || md5('p' || s.n),
      'amount_total', p_credits, 'currency', 'usd',
      'metadata', jsonb_build_object('credits', p_credits::text))))
  from (select nextval('bench.event_seq') as n) s, bench.buyer b
  where b.n = p_buyer
$$;

-- Every buyer starts with credits so spends succeed.
select public.handle_stripe_event(bench.checkout_event(n, 1000000000)) from bench.buyer;
