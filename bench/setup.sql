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

-- The writes of one credit and nothing else (no validation, locks, idempotency or deferred
-- events): a floor for the crediting RPC, measured on the same payload in the same run.
create function bench.credit_writes_only(p_event jsonb)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_session jsonb := p_event #> '{data,object}';
  v_user_id uuid := (v_session ->> 'client_reference_id')::uuid;
  v_credits bigint := (v_session #>> '{metadata,credits}')::bigint;
  v_recharge_id uuid;
  v_balance bigint;
begin
  insert into credit_private.stripe_webhook_event
    (event_id, type, payload, payment_intent_id, stripe_created_at, status, attempts, processed_at)
  values (p_event ->> 'id', p_event ->> 'type', p_event, v_session ->> 'payment_intent',
    to_timestamp((p_event ->> 'created')::bigint), 'processed', 1, now());
  insert into public.credit_recharge
    (user_id, credits, amount_cents, currency, status, completed_at, stripe_checkout_session_id, stripe_payment_intent_id)
  values (v_user_id, v_credits, (v_session ->> 'amount_total')::bigint, v_session ->> 'currency', 'completed', now(),
    v_session ->> 'id', v_session ->> 'payment_intent')
  returning id into v_recharge_id;
  update public.user_credit_balance
  set balance = balance + v_credits, total_recharged = total_recharged + v_credits, updated_at = now()
  where user_id = v_user_id
  returning balance into v_balance;
  insert into public.credit_transaction (user_id, type, amount, balance_after, recharge_id, idempotency_key)
  values (v_user_id, 'recharge', v_credits, v_balance, v_recharge_id, 'recharge:' || v_recharge_id);
end;
$$;
