-- Test: refunds and disputes take back credits proportionally, never twice, in any order, and wait for a payment that has not landed yet.
begin;
select plan(89);

select tests.create_user() as r1 \gset
select tests.create_user() as r2 \gset
select tests.create_user() as r3 \gset
select tests.create_user() as r4 \gset
select tests.create_user() as r5 \gset
select tests.create_user() as r6 \gset
select tests.create_user() as r7 \gset
select tests.create_user() as r8 \gset
select tests.create_user() as r9 \gset

-- ---------------------------------------------------------------------------------------
-- A paid Checkout Session for p_credits credits at p_amount cents, paid by PaymentIntent pi_<p_key>.
create function pg_temp.buy(p_key text, p_user uuid, p_credits bigint, p_amount bigint) returns text language sql as $$
  select tests.deliver_stripe_event(tests.stripe_event('evt_t040_buy_' || p_key, 'checkout.session.completed', jsonb_build_object(
    'id', 'cs_t040_' || p_key, 'object', 'checkout.session', 'mode', 'payment',
    'client_reference_id', p_user, 'payment_status', 'paid', 'payment_intent', 'pi_t040_' || p_key,
    'amount_total', p_amount, 'currency', 'usd', 'metadata', jsonb_build_object('credits', p_credits::text)))) ->> 'status'
$$;

-- charge.refunded with a cumulative amount_refunded, for the charge of pi_<p_key>.
create function pg_temp.refund(p_event_id text, p_key text, p_amount bigint, p_refunded bigint) returns jsonb language sql as $$
  select tests.deliver_stripe_event(tests.stripe_event(p_event_id, 'charge.refunded', jsonb_build_object(
    'id', 'ch_t040_' || p_key, 'object', 'charge', 'amount', p_amount, 'amount_captured', p_amount,
    'amount_refunded', p_refunded, 'refunded', p_refunded >= p_amount, 'currency', 'usd', 'paid', true,
    'status', 'succeeded', 'payment_intent', 'pi_t040_' || p_key)))
$$;

-- charge.dispute.created / charge.dispute.closed for the charge of pi_<p_key>.
create function pg_temp.dispute(p_event_id text, p_type text, p_key text, p_amount bigint, p_status text)
returns jsonb language sql as $$
  select tests.deliver_stripe_event(tests.stripe_event(p_event_id, p_type, jsonb_build_object(
    'id', 'dp_t040_' || p_key, 'object', 'dispute', 'amount', p_amount, 'currency', 'usd',
    'charge', 'ch_t040_' || p_key, 'payment_intent', 'pi_t040_' || p_key,
    'reason', 'fraudulent', 'status', p_status)))
$$;

-- balance/total_recharged/number of ledger entries of a user.
create function pg_temp.account(p_user uuid) returns text language sql as $$
  select format('%s/%s/%s',
    coalesce((select balance from public.user_credit_balance where user_id = p_user), 0),
    coalesce((select total_recharged from public.user_credit_balance where user_id = p_user), 0),
    (select count(*) from public.credit_transaction where user_id = p_user))
$$;

-- status/refunded_cents/refunded_credits/disputed_credits/dispute_status of the recharge of pi_<p_key>.
create function pg_temp.state(p_key text) returns text language sql as $$
  select format('%s/%s/%s/%s/%s', status, refunded_cents, refunded_credits, disputed_credits, coalesce(dispute_status, '-'))
  from public.credit_recharge where stripe_payment_intent_id = 'pi_t040_' || p_key
$$;

create function pg_temp.inbox(p_event_id text) returns text language sql as $$
  select format('%s/%s/%s', status, attempts, coalesce(last_error_code, '-'))
  from credit_private.stripe_webhook_event where event_id = p_event_id
$$;

-- ---------------------------------------------------------------------------------------
-- Partial refunds, repeated and out of order, then a full refund (100 credits for $10.00)
-- ---------------------------------------------------------------------------------------
select is(pg_temp.buy('r1', :'r1', 100, 1000), 'processed', 'r1 buys 100 credits for 1000 cents');
select is(
  pg_temp.refund('evt_t040_r1a', 'r1', 1000, 333),
  '{"event_id": "evt_t040_r1a", "status": "processed", "duplicate": false}'::jsonb,
  'a partial refund of 333 cents is processed');
select is(pg_temp.account(:'r1'), '67/100/2', 'it claws back floor(100 * 333 / 1000) = 33 credits');
select is(
  (select format('%s|%s|%s|%s', t.type, t.amount, t.balance_after, t.recharge_id = r.id)
   from public.credit_transaction t join public.credit_recharge r on r.stripe_payment_intent_id = 'pi_t040_r1'
   where t.user_id = :'r1' and t.type <> 'recharge'),
  'refund|-33|67|t', 'as one refund entry of -33, balance_after 67, tied to the recharge');
select is(pg_temp.state('r1'), 'completed/333/33/0/-', 'the recharge records 333 cents and 33 credits refunded');

select is(pg_temp.refund('evt_t040_r1a', 'r1', 1000, 333) ->> 'duplicate', 'true', 'the same refund event again is a duplicate');
select is(pg_temp.refund('evt_t040_r1b', 'r1', 1000, 333) ->> 'status', 'processed',
  'another event with the same cumulative refund is processed');
select is(pg_temp.account(:'r1'), '67/100/2', 'but claws back nothing more');

select is(pg_temp.refund('evt_t040_r1c', 'r1', 1000, 600) ->> 'status', 'processed', 'a second refund (cumulative 600) is processed');
select is(pg_temp.account(:'r1'), '40/100/3', 'it claws back only the difference: 60 - 33 = 27');
select is(pg_temp.state('r1'), 'completed/600/60/0/-', 'the recharge records 600 cents and 60 credits refunded');

select is(pg_temp.refund('evt_t040_r1d', 'r1', 1000, 500) ->> 'status', 'processed',
  'an older event (cumulative 500) arriving late is processed');
select is(pg_temp.account(:'r1'), '40/100/3', 'a late, smaller cumulative amount claws back nothing');
select is(pg_temp.state('r1'), 'completed/600/60/0/-', 'and does not lower the recorded refund');

select is(pg_temp.refund('evt_t040_r1e', 'r1', 1000, 1000) ->> 'status', 'processed', 'the full refund is processed');
select is(pg_temp.account(:'r1'), '0/100/4', 'the full refund takes back the remaining 40 credits');
select is(pg_temp.state('r1'), 'refunded/1000/100/0/-', 'the recharge is refunded, all 100 credits taken back');
select is(
  (select completed_at is not null from public.credit_recharge where stripe_payment_intent_id = 'pi_t040_r1'),
  true, 'a refunded recharge keeps completed_at (it was credited)');
select is(pg_temp.refund('evt_t040_r1f', 'r1', 1000, 1000) ->> 'status', 'processed', 'a repeated full refund is processed');
select is(pg_temp.account(:'r1'), '0/100/4', 'a repeated full refund takes back nothing');
select is(
  (select -sum(amount) from public.credit_transaction where user_id = :'r1' and type = 'refund'),
  100::numeric, 'in all, exactly the 100 credits sold were taken back');

-- ---------------------------------------------------------------------------------------
-- Rounding down (7 credits for $10.00)
-- ---------------------------------------------------------------------------------------
select is(pg_temp.buy('r2', :'r2', 7, 1000), 'processed', 'r2 buys 7 credits for 1000 cents');
select is(pg_temp.refund('evt_t040_r2a', 'r2', 1000, 1) ->> 'status', 'processed', 'a 1-cent refund is processed');
select is(pg_temp.account(:'r2'), '7/7/1', 'a 1-cent refund is worth floor(0.007) = 0 credits: no entry');
select is(pg_temp.state('r2'), 'completed/1/0/0/-', 'the refunded cents are still recorded');
select is(pg_temp.refund('evt_t040_r2b', 'r2', 1000, 999) ->> 'status', 'processed', 'a 999-cent cumulative refund is processed');
select is(pg_temp.account(:'r2'), '1/7/2', 'it takes back floor(6.993) = 6 credits');
select is(pg_temp.refund('evt_t040_r2c', 'r2', 1000, 1000) ->> 'status', 'processed', 'the last cent is refunded');
select is(pg_temp.account(:'r2'), '0/7/3', 'the full refund takes back the last credit');
select is(pg_temp.state('r2'), 'refunded/1000/7/0/-', 'the recharge is refunded, 7 credits taken back');

-- ---------------------------------------------------------------------------------------
-- A clawback may take the balance below zero; spending is then refused
-- ---------------------------------------------------------------------------------------
select is(pg_temp.buy('r3', :'r3', 100, 1000), 'processed', 'r3 buys 100 credits');
select tests.authenticate_as_service_role();
select is((public.spend_credits(:'r3', 80, 't040-r3-spend') ->> 'balance_after')::bigint, 20::bigint, 'r3 spends 80');
select tests.reset_identity();
select is(pg_temp.refund('evt_t040_r3a', 'r3', 1000, 1000) ->> 'status', 'processed', 'then the payment is fully refunded');
select is(pg_temp.account(:'r3'), '-80/100/3', 'all 100 credits are taken back: the balance is -80');
select is(
  (select balance_after from public.credit_transaction where user_id = :'r3' and type = 'refund'),
  -80::bigint, 'the refund entry records balance_after -80');
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.spend_credits(%L, 1, 't040-r3-after')$$, :'r3'), 'CR001', 'insufficient credits',
  'spending is refused while the balance is negative');
select tests.reset_identity();

-- ---------------------------------------------------------------------------------------
-- A refund that arrives before its payment is deferred, then applied when the payment lands
-- ---------------------------------------------------------------------------------------
select is(
  pg_temp.refund('evt_t040_r4a', 'r4', 1000, 250),
  '{"event_id": "evt_t040_r4a", "status": "deferred", "duplicate": false}'::jsonb,
  'a refund for a payment not yet credited is deferred');
select is(pg_temp.inbox('evt_t040_r4a'), 'deferred/1/-', 'the inbox keeps it as deferred');
select is(pg_temp.account(:'r4'), '0/0/0', 'a deferred refund writes nothing');
select is(pg_temp.refund('evt_t040_r4a', 'r4', 1000, 250) ->> 'status', 'deferred',
  'its redelivery is tried again (not a duplicate) and is still deferred');
select is(pg_temp.inbox('evt_t040_r4a'), 'deferred/2/-', 'both attempts are counted');
select is(pg_temp.buy('r4', :'r4', 100, 1000), 'processed', 'the payment lands');
select is(pg_temp.account(:'r4'), '75/100/2', 'the payment is credited and the deferred refund applied: 100 - 25');
select is(
  (select array_agg(format('%s:%s:%s', type, amount, balance_after) order by balance_after desc)
   from public.credit_transaction where user_id = :'r4'),
  array['recharge:100:100', 'refund:-25:75'], 'the recharge entry comes first, then the refund');
select is(pg_temp.inbox('evt_t040_r4a'), 'processed/3/-', 'the deferred event is now processed');
select is(pg_temp.refund('evt_t040_r4a', 'r4', 1000, 250) ->> 'duplicate', 'true', 'a later redelivery is a duplicate');
select is(pg_temp.account(:'r4'), '75/100/2', 'and takes back nothing more');

-- ---------------------------------------------------------------------------------------
-- A dispute that arrives before its payment is deferred too
-- ---------------------------------------------------------------------------------------
select is(pg_temp.dispute('evt_t040_r5a', 'charge.dispute.created', 'r5', 1000, 'needs_response') ->> 'status', 'deferred',
  'a dispute for a payment not yet credited is deferred');
select is(pg_temp.buy('r5', :'r5', 100, 1000), 'processed', 'the payment lands');
select is(pg_temp.account(:'r5'), '0/100/2', 'the payment is credited and the deferred dispute holds all 100 credits');
select is(pg_temp.state('r5'), 'completed/0/0/100/needs_response', 'the recharge records the hold and the dispute status');
select is(pg_temp.inbox('evt_t040_r5a'), 'processed/2/-', 'the deferred dispute event is processed');
select is(pg_temp.dispute('evt_t040_r5b', 'charge.dispute.closed', 'r5', 1000, 'won') ->> 'status', 'processed',
  'the dispute is then won');
select is(pg_temp.account(:'r5'), '100/100/3', 'a won dispute restores the held credits');

-- ---------------------------------------------------------------------------------------
-- Dispute created holds; closed won restores (once)
-- ---------------------------------------------------------------------------------------
select is(pg_temp.buy('r6', :'r6', 100, 1000), 'processed', 'r6 buys 100 credits');
select is(
  pg_temp.dispute('evt_t040_r6a', 'charge.dispute.created', 'r6', 1000, 'needs_response'),
  '{"event_id": "evt_t040_r6a", "status": "processed", "duplicate": false}'::jsonb,
  'charge.dispute.created is processed');
select is(pg_temp.account(:'r6'), '0/100/2', 'an opened dispute holds the disputed credits');
select is(
  (select format('%s|%s|%s', type, amount, stripe_dispute_id)
   from public.credit_transaction t join public.credit_recharge r on r.id = t.recharge_id
   where t.user_id = :'r6' and t.type = 'dispute'),
  'dispute|-100|dp_t040_r6', 'the hold is a dispute entry of -100, and the recharge names the dispute');
select is(pg_temp.dispute('evt_t040_r6a', 'charge.dispute.created', 'r6', 1000, 'needs_response') ->> 'duplicate', 'true',
  'the same dispute event again is a duplicate');
select is(pg_temp.dispute('evt_t040_r6b', 'charge.dispute.created', 'r6', 1000, 'needs_response') ->> 'status', 'processed',
  'another created event for the same dispute is processed');
select is(pg_temp.account(:'r6'), '0/100/2', 'but holds nothing more');
select is(pg_temp.dispute('evt_t040_r6c', 'charge.dispute.closed', 'r6', 1000, 'won') ->> 'status', 'processed',
  'charge.dispute.closed (won) is processed');
select is(pg_temp.account(:'r6'), '100/100/3', 'a won dispute restores the 100 credits');
select is(pg_temp.state('r6'), 'completed/0/0/0/won', 'the recharge records the dispute as won, nothing held');
select is(pg_temp.dispute('evt_t040_r6d', 'charge.dispute.closed', 'r6', 1000, 'won') ->> 'status', 'processed',
  'another closed (won) event is processed');
select is(pg_temp.account(:'r6'), '100/100/3', 'but restores nothing more');

-- ---------------------------------------------------------------------------------------
-- Dispute lost keeps the hold (partial dispute: 400 of 1000 cents)
-- ---------------------------------------------------------------------------------------
select is(pg_temp.buy('r7', :'r7', 100, 1000), 'processed', 'r7 buys 100 credits');
select is(pg_temp.dispute('evt_t040_r7a', 'charge.dispute.created', 'r7', 400, 'needs_response') ->> 'status', 'processed',
  'a dispute of 400 cents opens');
select is(pg_temp.account(:'r7'), '60/100/2', 'it holds floor(100 * 400 / 1000) = 40 credits');
select is(pg_temp.dispute('evt_t040_r7b', 'charge.dispute.closed', 'r7', 400, 'lost') ->> 'status', 'processed',
  'the dispute is lost');
select is(pg_temp.account(:'r7'), '60/100/2', 'a lost dispute keeps the 40 credits taken, and takes no more');
select is(pg_temp.state('r7'), 'completed/0/0/40/lost', 'the recharge records the dispute as lost, 40 credits held');

-- ---------------------------------------------------------------------------------------
-- Out of order: closed before created
-- ---------------------------------------------------------------------------------------
select is(pg_temp.buy('r8', :'r8', 100, 1000), 'processed', 'r8 buys 100 credits');
select is(pg_temp.dispute('evt_t040_r8b', 'charge.dispute.closed', 'r8', 1000, 'won') ->> 'status', 'processed',
  'a won close arriving first is processed');
select is(pg_temp.dispute('evt_t040_r8a', 'charge.dispute.created', 'r8', 1000, 'needs_response') ->> 'status', 'processed',
  'the created event arriving after it is processed');
select is(pg_temp.account(:'r8'), '100/100/1', 'closed (won) before created: nothing is ever held');
select is(pg_temp.state('r8'), 'completed/0/0/0/won', 'the recharge keeps the dispute as won');

select is(pg_temp.buy('r9', :'r9', 100, 1000), 'processed', 'r9 buys 100 credits');
select is(pg_temp.dispute('evt_t040_r9b', 'charge.dispute.closed', 'r9', 1000, 'lost') ->> 'status', 'processed',
  'a lost close arriving first is processed');
select is(pg_temp.dispute('evt_t040_r9a', 'charge.dispute.created', 'r9', 1000, 'needs_response') ->> 'status', 'processed',
  'the created event arriving after it is processed');
select is(pg_temp.account(:'r9'), '0/100/2', 'closed (lost) before created: the credits are taken once');

-- ---------------------------------------------------------------------------------------
-- A refund made while credits are held by an inquiry must not be given back when it closes
-- (Stripe lets a merchant refund an inquiry, which then closes as warning_closed).
-- ---------------------------------------------------------------------------------------
select tests.create_user() as r10 \gset
select is(pg_temp.buy('r10', :'r10', 100, 1000), 'processed', 'r10 buys 100 credits');
select is(pg_temp.dispute('evt_t040_r10a', 'charge.dispute.created', 'r10', 1000, 'warning_needs_response') ->> 'status',
  'processed', 'an inquiry opens and holds the 100 credits');
select is(pg_temp.refund('evt_t040_r10b', 'r10', 1000, 1000) ->> 'status', 'processed', 'the merchant refunds the payment in full');
select is(pg_temp.dispute('evt_t040_r10c', 'charge.dispute.closed', 'r10', 1000, 'warning_closed') ->> 'status',
  'processed', 'the inquiry closes (warning_closed)');
select is(
  (select balance from public.user_credit_balance where user_id = :'r10'), 0::bigint,
  'a fully refunded payment leaves none of its credits, even if the refund landed while a dispute held them');

-- ---------------------------------------------------------------------------------------
-- Malformed refund and dispute objects fail loudly
-- ---------------------------------------------------------------------------------------
select is(
  (select format('%s/%s', r ->> 'status', r ->> 'error_code')
   from tests.deliver_stripe_event(tests.stripe_event('evt_t040_bad1', 'charge.refunded',
     '{"id": "ch_t040_r6", "object": "charge", "amount": 1000, "payment_intent": "pi_t040_r6"}')) r),
  'failed/CR003', 'a charge.refunded without amount_refunded fails with CR003');
select is(
  (select format('%s/%s', r ->> 'status', r ->> 'error_code')
   from tests.deliver_stripe_event(tests.stripe_event('evt_t040_bad2', 'charge.dispute.created',
     '{"id": "dp_t040_x", "object": "dispute", "amount": 1000, "charge": "ch_t040_r6"}')) r),
  'failed/CR003', 'a dispute without payment_intent fails with CR003');
select is(pg_temp.account(:'r6'), '100/100/3', 'and neither touched the balance');

select * from finish();
rollback;
