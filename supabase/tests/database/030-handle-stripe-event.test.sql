-- Test: handle_stripe_event turns Checkout Session events into credits exactly once, and refuses bad ones loudly.
-- Events are built in SQL with Stripe's real shape and delivered as service_role (the
-- webhook's role); the inbox is then inspected as postgres.
begin;
select plan(98);

select tests.create_user() as ua \gset
select tests.create_user() as ub \gset

-- ---------------------------------------------------------------------------------------
-- Local helpers (pg_temp: gone at the end of the session)
-- ---------------------------------------------------------------------------------------
-- A Checkout Session object; null arguments are left out, as Stripe leaves them null/absent.
create function pg_temp.session(
  p_id text, p_user text, p_credits text, p_payment_status text default 'paid',
  p_payment_intent text default null, p_amount bigint default 1000
) returns jsonb language sql as $$
  select jsonb_strip_nulls(jsonb_build_object(
    'id', p_id, 'object', 'checkout.session', 'mode', 'payment',
    'client_reference_id', p_user, 'payment_status', p_payment_status,
    'payment_intent', p_payment_intent, 'amount_total', p_amount, 'currency', 'usd',
    'metadata', case when p_credits is null then '{}'::jsonb else jsonb_build_object('credits', p_credits) end))
$$;

-- status/attempts/last_error_code of an inbox row ('-' for null).
create function pg_temp.inbox(p_event_id text) returns text language sql as $$
  select format('%s/%s/%s', status, attempts, coalesce(last_error_code, '-'))
  from credit_private.stripe_webhook_event where event_id = p_event_id
$$;

-- status/credits/credited? of the recharge of a session.
create function pg_temp.recharge(p_session_id text) returns text language sql as $$
  select format('%s/%s/%s', status, credits, completed_at is not null)
  from public.credit_recharge where stripe_checkout_session_id = p_session_id
$$;

-- balance/total_recharged/number of ledger entries of a user.
create function pg_temp.account(p_user uuid) returns text language sql as $$
  select format('%s/%s/%s',
    coalesce((select balance from public.user_credit_balance where user_id = p_user), 0),
    coalesce((select total_recharged from public.user_credit_balance where user_id = p_user), 0),
    (select count(*) from public.credit_transaction where user_id = p_user))
$$;

-- Recharge ledger entries of a session's recharge.
create function pg_temp.recharge_entries(p_session_id text) returns bigint language sql as $$
  select count(*) from public.credit_transaction t
  join public.credit_recharge r on r.id = t.recharge_id
  where r.stripe_checkout_session_id = p_session_id and t.type = 'recharge'
$$;

-- ---------------------------------------------------------------------------------------
-- A paid checkout.session.completed credits once; the three rows agree
-- ---------------------------------------------------------------------------------------
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_a1', 'checkout.session.completed',
    pg_temp.session('cs_t030_a', :'ua', '100', 'paid', 'pi_t030_a', 1000))),
  '{"event_id": "evt_t030_a1", "status": "processed", "duplicate": false}'::jsonb,
  'a paid session is processed');
select is(
  (select format('%s|%s|%s|%s|%s|%s|%s', user_id = :'ua', status, credits, amount_cents, currency,
                 stripe_payment_intent_id, completed_at is not null)
   from public.credit_recharge where stripe_checkout_session_id = 'cs_t030_a'),
  't|completed|100|1000|usd|pi_t030_a|t',
  'the recharge is completed, with completed_at, amount, currency and payment intent from the session');
select is(
  (select format('%s|%s|%s|%s', t.user_id = :'ua', t.amount, t.balance_after, t.idempotency_key = 'recharge:' || r.id)
   from public.credit_transaction t join public.credit_recharge r on r.id = t.recharge_id
   where r.stripe_checkout_session_id = 'cs_t030_a' and t.type = 'recharge'),
  't|100|100|t', 'one recharge entry of 100 credits with balance_after 100');
select is(pg_temp.account(:'ua'), '100/100/1', 'balance 100 and total_recharged 100, one ledger entry');
select is(pg_temp.inbox('evt_t030_a1'), 'processed/1/-', 'the inbox row is processed after one attempt');
select is(
  (select format('%s|%s|%s|%s', type, payload = tests.stripe_event('evt_t030_a1', 'checkout.session.completed',
            pg_temp.session('cs_t030_a', :'ua', '100', 'paid', 'pi_t030_a', 1000)),
          processed_at is not null, payment_intent_id)
   from credit_private.stripe_webhook_event where event_id = 'evt_t030_a1'),
  'checkout.session.completed|t|t|pi_t030_a', 'the inbox keeps type, raw payload, processed_at and payment intent');

-- Duplicate delivery of the same event id: no effect.
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_a1', 'checkout.session.completed',
    pg_temp.session('cs_t030_a', :'ua', '100', 'paid', 'pi_t030_a', 1000))),
  '{"event_id": "evt_t030_a1", "status": "processed", "duplicate": true}'::jsonb,
  'a duplicate delivery answers duplicate = true');
select is(pg_temp.account(:'ua'), '100/100/1', 'a duplicate delivery credits nothing');
select is(pg_temp.inbox('evt_t030_a1'), 'processed/1/-', 'a duplicate delivery is not applied again (attempts unchanged)');

-- Another event for the same, already credited, session: processed, but no second credit.
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_a2', 'checkout.session.async_payment_succeeded',
    pg_temp.session('cs_t030_a', :'ua', '100', 'paid', 'pi_t030_a', 1000))) ->> 'status',
  'processed', 'a second paid event for the same session is processed');
select is(pg_temp.recharge_entries('cs_t030_a'), 1::bigint, 'the session still has exactly one recharge entry');
select is(pg_temp.account(:'ua'), '100/100/1', 'and the balance is unchanged');
-- A late expired event does not undo a credited recharge.
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_a3', 'checkout.session.expired',
    pg_temp.session('cs_t030_a', :'ua', '100', 'paid', 'pi_t030_a', 1000))) ->> 'status',
  'processed', 'a late expired event is processed');
select is(pg_temp.recharge('cs_t030_a'), 'completed/100/t', 'a late expired event leaves a credited recharge completed');

-- ---------------------------------------------------------------------------------------
-- Unpaid (async payment method): pending, then async_payment_succeeded credits
-- ---------------------------------------------------------------------------------------
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_b1', 'checkout.session.completed',
    pg_temp.session('cs_t030_b', :'ua', '50', 'unpaid', 'pi_t030_b', 500))) ->> 'status',
  'processed', 'an unpaid completed session is processed');
select is(pg_temp.recharge('cs_t030_b'), 'pending/50/f', 'an unpaid session leaves a pending recharge');
select is(pg_temp.recharge_entries('cs_t030_b'), 0::bigint, 'an unpaid session posts no ledger entry');
select is(pg_temp.account(:'ua'), '100/100/1', 'an unpaid session credits nothing');

select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_b2', 'checkout.session.async_payment_succeeded',
    pg_temp.session('cs_t030_b', :'ua', '50', 'paid', 'pi_t030_b', 500))),
  '{"event_id": "evt_t030_b2", "status": "processed", "duplicate": false}'::jsonb,
  'async_payment_succeeded is processed');
select is(pg_temp.recharge('cs_t030_b'), 'completed/50/t', 'async_payment_succeeded completes the pending recharge');
select is(pg_temp.recharge_entries('cs_t030_b'), 1::bigint, 'async_payment_succeeded posts one recharge entry');
select is(pg_temp.account(:'ua'), '150/150/2', 'async_payment_succeeded credits 50 (balance 150)');
select is(
  (select balance_after from public.credit_transaction t join public.credit_recharge r on r.id = t.recharge_id
   where r.stripe_checkout_session_id = 'cs_t030_b'),
  150::bigint, 'the second recharge entry carries balance_after 150');
select is(
  (select count(*)::int from public.credit_recharge where stripe_checkout_session_id = 'cs_t030_b'),
  1, 'the session has one recharge (the pending one was completed, not duplicated)');

select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_b3', 'checkout.session.async_payment_failed',
    pg_temp.session('cs_t030_b', :'ua', '50', 'unpaid', 'pi_t030_b', 500))) ->> 'status',
  'processed', 'a late async_payment_failed is processed');
select is(pg_temp.recharge('cs_t030_b'), 'completed/50/t', 'a late async_payment_failed does not undo a credit');
select is(pg_temp.account(:'ua'), '150/150/2', 'nor does it touch the balance');

-- ---------------------------------------------------------------------------------------
-- async_payment_failed and expired close a pending recharge without credit
-- ---------------------------------------------------------------------------------------
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_c1', 'checkout.session.completed',
    pg_temp.session('cs_t030_c', :'ua', '70', 'unpaid', 'pi_t030_c', 700))) ->> 'status',
  'processed', 'another unpaid session is processed');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_c2', 'checkout.session.async_payment_failed',
    pg_temp.session('cs_t030_c', :'ua', '70', 'unpaid', 'pi_t030_c', 700))) ->> 'status',
  'processed', 'async_payment_failed is processed');
select is(pg_temp.recharge('cs_t030_c'), 'failed/70/f', 'async_payment_failed marks the pending recharge failed');
select is(pg_temp.account(:'ua'), '150/150/2', 'a failed payment credits nothing');

insert into public.credit_recharge (id, user_id, credits, amount_cents, stripe_checkout_session_id)
values ('30000000-0000-4000-8000-0000000000d0', :'ub', 20, 200, 'cs_t030_d');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_d1', 'checkout.session.expired',
    pg_temp.session('cs_t030_d', :'ub', '20', 'unpaid', null, 200))) ->> 'status',
  'processed', 'checkout.session.expired is processed');
select is(pg_temp.recharge('cs_t030_d'), 'expired/20/f', 'expired marks the pending recharge expired');
select is(pg_temp.account(:'ub'), '0/0/0', 'an expired session credits nothing');

-- ---------------------------------------------------------------------------------------
-- A pending recharge created beforehand is the one completed
-- ---------------------------------------------------------------------------------------
insert into public.credit_recharge (id, user_id, credits, amount_cents, stripe_checkout_session_id)
values ('30000000-0000-4000-8000-0000000000e0', :'ub', 200, 2000, 'cs_t030_e');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_e1', 'checkout.session.completed',
    pg_temp.session('cs_t030_e', :'ub', '200', 'paid', 'pi_t030_e', 2000))) ->> 'status',
  'processed', 'a paid session with a pre-created pending recharge is processed');
select is(
  (select array_agg(format('%s/%s/%s', id, status, stripe_payment_intent_id))
   from public.credit_recharge where stripe_checkout_session_id = 'cs_t030_e'),
  array['30000000-0000-4000-8000-0000000000e0/completed/pi_t030_e'],
  'the pre-created recharge itself is completed (no second recharge row)');
select is(
  (select array_agg(recharge_id::text) from public.credit_transaction where user_id = :'ub' and type = 'recharge'),
  array['30000000-0000-4000-8000-0000000000e0'], 'the recharge entry points at the pre-created recharge');
select is(pg_temp.account(:'ub'), '200/200/1', 'the user is credited 200');

-- A pre-created recharge is authoritative: the session need not repeat user or credits.
insert into public.credit_recharge (id, user_id, credits, amount_cents, stripe_checkout_session_id)
values ('30000000-0000-4000-8000-0000000000f0', :'ub', 30, 300, 'cs_t030_f');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_f1', 'checkout.session.completed',
    pg_temp.session('cs_t030_f', null, null, 'paid', 'pi_t030_f', 300))) ->> 'status',
  'processed', 'a paid session without metadata, for a pre-created recharge, is processed');
select is(pg_temp.recharge('cs_t030_f'), 'completed/30/t', 'its recharge is completed with the recharge''s own credits');
select is(pg_temp.account(:'ub'), '230/230/2', 'the recharge''s owner is credited 30');

-- Nor need it name the user when it does name the (matching) credits (a user of its own, so
-- that the outcome, whatever it is, leaves the other accounts alone).
select tests.create_user() as uc \gset
insert into public.credit_recharge (id, user_id, credits, amount_cents, stripe_checkout_session_id)
values ('30000000-0000-4000-8000-0000000000f5', :'uc', 12, 120, 'cs_t030_f5');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_f5', 'checkout.session.completed',
    pg_temp.session('cs_t030_f5', null, '12', 'paid', 'pi_t030_f5', 120))) ->> 'status',
  'processed', 'a paid session naming only metadata.credits, for a pre-created recharge, is processed');
select is(pg_temp.account(:'uc'), '12/12/1', 'and credits the pre-created recharge''s owner');

-- metadata.user_id names the buyer when client_reference_id is absent.
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_g1', 'checkout.session.completed',
    jsonb_set(pg_temp.session('cs_t030_g', null, '5', 'paid', 'pi_t030_g', 50), '{metadata,user_id}', to_jsonb(:'ub'::text))))
    ->> 'status',
  'processed', 'a session naming the buyer in metadata.user_id is processed');
select is(pg_temp.account(:'ub'), '235/235/3', 'the buyer named by metadata.user_id is credited');

-- no_payment_required (a 100 % discount) credits as paid.
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_p1', 'checkout.session.completed',
    pg_temp.session('cs_t030_p', :'ub', '15', 'no_payment_required', null, 0))) ->> 'status',
  'processed', 'a no_payment_required session is processed');
select is(pg_temp.account(:'ub'), '250/250/4', 'a no_payment_required session credits its credits');

-- ---------------------------------------------------------------------------------------
-- Malformed or contradictory sessions: failed with CR003 and a clear reason, never credited
-- ---------------------------------------------------------------------------------------
insert into public.credit_recharge (id, user_id, credits, amount_cents, stripe_checkout_session_id)
values ('30000000-0000-4000-8000-0000000000a8', :'ub', 10, 100, 'cs_t030_h'),
       ('30000000-0000-4000-8000-0000000000a9', :'ub', 10, 100, 'cs_t030_i');

create temporary table failing_case (n int, event_id text, session_id text, session jsonb, reason text);
insert into failing_case values
  (1, 'evt_t030_h1', 'cs_t030_h', pg_temp.session('cs_t030_h', :'ua', '10', 'paid', 'pi_t030_h', 100),
   'names user [0-9a-f-]+, but its recharge belongs to ' || :'ub'),
  (2, 'evt_t030_i1', 'cs_t030_i', pg_temp.session('cs_t030_i', :'ub', '20', 'paid', 'pi_t030_i', 100),
   'sells 20 credits, but its recharge has 10'),
  (3, 'evt_t030_j1', 'cs_t030_j', pg_temp.session('cs_t030_j', null, '10', 'paid', 'pi_t030_j', 100),
   'names no user \(client_reference_id or metadata.user_id\)'),
  (4, 'evt_t030_j2', 'cs_t030_j2', pg_temp.session('cs_t030_j2', '30000000-0000-4000-8000-000000000404', '10', 'paid', 'pi_t030_j2', 100),
   'names unknown user 30000000-0000-4000-8000-000000000404'),
  (5, 'evt_t030_j3', 'cs_t030_j3', pg_temp.session('cs_t030_j3', 'user_123', '10', 'paid', 'pi_t030_j3', 100),
   'names user "user_123", which is not a uuid'),
  (6, 'evt_t030_k1', 'cs_t030_k1', pg_temp.session('cs_t030_k1', :'ua', '0', 'paid', 'pi_t030_k1', 100),
   'metadata.credits "0", not a positive integer'),
  (7, 'evt_t030_k2', 'cs_t030_k2', pg_temp.session('cs_t030_k2', :'ua', '-5', 'paid', 'pi_t030_k2', 100),
   'metadata.credits "-5", not a positive integer'),
  (8, 'evt_t030_k3', 'cs_t030_k3', pg_temp.session('cs_t030_k3', :'ua', 'abc', 'paid', 'pi_t030_k3', 100),
   'metadata.credits "abc", not a positive integer'),
  (9, 'evt_t030_k4', 'cs_t030_k4', pg_temp.session('cs_t030_k4', :'ua', '1.5', 'paid', 'pi_t030_k4', 100),
   'metadata.credits "1.5", not a positive integer'),
  (10, 'evt_t030_k5', 'cs_t030_k5', pg_temp.session('cs_t030_k5', :'ua', '', 'paid', 'pi_t030_k5', 100),
   'metadata.credits "", not a positive integer'),
  (11, 'evt_t030_k6', 'cs_t030_k6',
   jsonb_set(pg_temp.session('cs_t030_k6', :'ua', null, 'paid', 'pi_t030_k6', 100), '{metadata,credits}', 'null'),
   'metadata.credits "\(missing\)", not a positive integer'),
  (12, 'evt_t030_k7', 'cs_t030_k7', pg_temp.session('cs_t030_k7', :'ua', '99999999999999999999', 'paid', 'pi_t030_k7', 100),
   'metadata.credits "99999999999999999999", not a positive integer'),
  (13, 'evt_t030_k8', 'cs_t030_k8', pg_temp.session('cs_t030_k8', :'ua', ' 10', 'paid', 'pi_t030_k8', 100),
   'metadata.credits " 10", not a positive integer'),
  (14, 'evt_t030_k9', null, pg_temp.session(null, :'ua', '10', 'paid', 'pi_t030_k9', 100),
   'checkout.session.completed event has no checkout session id');

select is(
  (select format('%s/%s/%s', r ->> 'status', r ->> 'duplicate', r ->> 'error_code')
   from tests.deliver_stripe_event(tests.stripe_event(f.event_id, 'checkout.session.completed', f.session)) r),
  'failed/false/CR003',
  format('case %s: the event fails with CR003 (%s)', f.n, f.reason))
from failing_case f order by f.n;

select is(
  array(select format('%s: %s (%s)', f.n, pg_temp.inbox(f.event_id), e.last_error)
        from failing_case f left join credit_private.stripe_webhook_event e on e.event_id = f.event_id
        where pg_temp.inbox(f.event_id) is distinct from 'failed/1/CR003' or e.last_error !~ f.reason
        order by f.n),
  '{}'::text[], 'each failed event is stored as failed/1/CR003 with its reason in last_error');
select is(
  array(select format('%s: %s', f.session_id, pg_temp.recharge(f.session_id))
        from failing_case f
        where f.session_id is distinct from 'cs_t030_h' and f.session_id is distinct from 'cs_t030_i' and pg_temp.recharge(f.session_id) is not null),
  '{}'::text[], 'no failed session left a recharge row behind');
select is(pg_temp.recharge('cs_t030_h'), 'pending/10/f', 'a user mismatch leaves the pending recharge pending');
select is(pg_temp.recharge('cs_t030_i'), 'pending/10/f', 'a credits mismatch leaves the pending recharge pending');
select is(pg_temp.account(:'ua'), '150/150/2', 'no failed event credited the first user');
select is(pg_temp.account(:'ub'), '250/250/4', 'no failed event credited the second user');
select is(
  (select count(*)::int from public.credit_transaction t
   where t.idempotency_key like 'recharge:%'
     and t.recharge_id in (select id from public.credit_recharge r
                           where r.stripe_checkout_session_id in (select session_id from failing_case))),
  0, 'no ledger entry exists for any failed session');

-- ---------------------------------------------------------------------------------------
-- Not for us: ignored, recorded, and duplicates still recognised
-- ---------------------------------------------------------------------------------------
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_m1', 'checkout.session.completed',
    pg_temp.session('cs_t030_m', :'ua', null, 'paid', 'pi_t030_m', 900))),
  '{"event_id": "evt_t030_m1", "status": "ignored", "duplicate": false}'::jsonb,
  'a session without metadata.credits and without a pending recharge is ignored');
select is(pg_temp.recharge('cs_t030_m'), null::text, 'an ignored session creates no recharge');
select is(
  (select format('%s/%s', pg_temp.inbox('evt_t030_m1'), processed_at is not null)
   from credit_private.stripe_webhook_event where event_id = 'evt_t030_m1'),
  'ignored/1/-/t', 'an ignored event is recorded as ignored, with processed_at');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_m1', 'checkout.session.completed',
    pg_temp.session('cs_t030_m', :'ua', null, 'paid', 'pi_t030_m', 900))),
  '{"event_id": "evt_t030_m1", "status": "ignored", "duplicate": true}'::jsonb,
  'a redelivered ignored event answers duplicate = true');

select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_u1', 'customer.created', '{"id": "cus_t030", "object": "customer"}')),
  '{"event_id": "evt_t030_u1", "status": "ignored", "duplicate": false}'::jsonb,
  'an unknown event type is ignored');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_u2', 'payment_intent.succeeded',
    '{"id": "pi_t030_a", "object": "payment_intent", "amount": 1000}')) ->> 'status',
  'ignored', 'payment_intent.succeeded (not handled) is ignored, even for a known payment intent');
select is(
  (select array_agg(format('%s:%s:%s', event_id, type, status) order by event_id)
   from credit_private.stripe_webhook_event where event_id in ('evt_t030_u1', 'evt_t030_u2')),
  array['evt_t030_u1:customer.created:ignored', 'evt_t030_u2:payment_intent.succeeded:ignored'],
  'ignored events are recorded with their type');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_u1', 'customer.created', '{"id": "cus_t030", "object": "customer"}')) ->> 'duplicate',
  'true', 'a redelivered unknown event is a duplicate');
select is(pg_temp.account(:'ua'), '150/150/2', 'ignored events change no balance');

-- ---------------------------------------------------------------------------------------
-- Not a Stripe event at all: 22023, nothing stored
-- ---------------------------------------------------------------------------------------
select throws_ok(
  format('select tests.deliver_stripe_event(%L::jsonb)', e), '22023',
  'not a Stripe event: id, type and data.object are required', format('malformed event refused: %s', d))
from (values
  ('{}', 'empty object'),
  ('{"type": "checkout.session.completed", "data": {"object": {}}}', 'no id'),
  ('{"id": "", "type": "checkout.session.completed", "data": {"object": {}}}', 'empty id'),
  ('{"id": "evt_t030_bad1", "data": {"object": {}}}', 'no type'),
  ('{"id": "evt_t030_bad2", "type": "", "data": {"object": {}}}', 'empty type'),
  ('{"id": "evt_t030_bad3", "type": "checkout.session.completed"}', 'no data'),
  ('{"id": "evt_t030_bad4", "type": "checkout.session.completed", "data": {}}', 'no data.object'),
  ('{"id": "evt_t030_bad5", "type": "checkout.session.completed", "data": {"object": "cs_1"}}', 'data.object not an object'),
  ('{"id": "evt_t030_bad6", "type": "checkout.session.completed", "data": {"object": []}}', 'data.object an array'),
  ('[{"id": "evt_t030_bad7"}]', 'an array'),
  ('"evt_t030_bad8"', 'a string')
) as v(e, d);
select throws_ok('select public.handle_stripe_event(null)', '22023',
  'not a Stripe event: id, type and data.object are required', 'a null event is refused');
select is(
  (select count(*)::int from credit_private.stripe_webhook_event where event_id like 'evt_t030_bad%' or event_id = ''),
  0, 'no malformed event reached the inbox');

-- ---------------------------------------------------------------------------------------
-- A failed event is retried by a later delivery, and succeeds once the cause is fixed
-- ---------------------------------------------------------------------------------------
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_n1', 'checkout.session.completed',
    pg_temp.session('cs_t030_n', '30000000-0000-4000-8000-00000000f1f1', '40', 'paid', 'pi_t030_n', 400))) - 'error',
  '{"event_id": "evt_t030_n1", "status": "failed", "duplicate": false, "error_code": "CR003"}'::jsonb,
  'an event for a user not yet created fails');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_n1', 'checkout.session.completed',
    pg_temp.session('cs_t030_n', '30000000-0000-4000-8000-00000000f1f1', '40', 'paid', 'pi_t030_n', 400))) ->> 'status',
  'failed', 'its redelivery is applied again (not treated as a duplicate) and fails again');
select is(pg_temp.inbox('evt_t030_n1'), 'failed/2/CR003', 'both attempts are counted');

insert into auth.users (id, email) values ('30000000-0000-4000-8000-00000000f1f1', 't030-late@test.local');

select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_n1', 'checkout.session.completed',
    pg_temp.session('cs_t030_n', '30000000-0000-4000-8000-00000000f1f1', '40', 'paid', 'pi_t030_n', 400))),
  '{"event_id": "evt_t030_n1", "status": "processed", "duplicate": false}'::jsonb,
  'once the user exists, the next delivery processes the event');
select is(
  (select format('%s|%s|%s', pg_temp.inbox('evt_t030_n1'), last_error is null, processed_at is not null)
   from credit_private.stripe_webhook_event where event_id = 'evt_t030_n1'),
  'processed/3/-|t|t', 'the inbox row is processed after 3 attempts, its error cleared');
select is(pg_temp.account('30000000-0000-4000-8000-00000000f1f1'), '40/40/1', 'the late user is credited once');
select is(
  tests.deliver_stripe_event(tests.stripe_event('evt_t030_n1', 'checkout.session.completed',
    pg_temp.session('cs_t030_n', '30000000-0000-4000-8000-00000000f1f1', '40', 'paid', 'pi_t030_n', 400))) ->> 'duplicate',
  'true', 'after success, further deliveries are duplicates');
select is(pg_temp.account('30000000-0000-4000-8000-00000000f1f1'), '40/40/1', 'and credit nothing more');

select * from finish();
rollback;
