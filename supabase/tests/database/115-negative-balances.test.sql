-- Test: negative_balances: a clawback below zero is named as expected, an unexplained one as suspect; neither is "repaired" beyond the ledger.
begin;
select plan(7);

create temp table baseline as
select tests.named(public.diagnose_credits(100000), 'negative_balances', 'user_id') as id;

create temp table ids (name text primary key, id uuid);
insert into ids values ('refunded', tests.create_user()), ('edited', tests.create_user()), ('fine', tests.create_user());

-- Bought 100, spent 80, then the payment was refunded in full: the clawback takes 100.
select tests.pay((select id from ids where name = 'refunded'), 'cs_t115_1', 100);
select public.spend_credits((select id from ids where name = 'refunded'), 80, 't115-spend', null);
select public.handle_stripe_event(jsonb_build_object('id', 'evt_t115_refund', 'object', 'event', 'type', 'charge.refunded',
  'created', 1700000001, 'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'ch_t115', 'object', 'charge', 'amount', 100, 'amount_refunded', 100, 'currency', 'usd',
    'payment_intent', 'pi_cs_t115_1'))));
-- A balance edited below zero by hand.
select tests.pay((select id from ids where name = 'edited'), 'cs_t115_2', 50);
update public.user_credit_balance set balance = -5 where user_id = (select id from ids where name = 'edited');
select tests.pay((select id from ids where name = 'fine'), 'cs_t115_3', 50);

create temp table report as select public.diagnose_credits(100000) as r;
create temp table findings as
select f from report, jsonb_array_elements(r #> '{categories,negative_balances,findings}') f;

select set_eq(
  $$ select id from tests.named((select r from report), 'negative_balances', 'user_id') except select id from baseline $$,
  $$ select id::text from ids where name in ('refunded', 'edited') $$,
  'the diagnosis names exactly the two negative balances'
);
select is(
  (select row(f ->> 'balance', f ->> 'total_recharged', f ->> 'clawed_back')::text from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'refunded')),
  row('-80', '100', '100')::text, 'a finding names the balance, the total and what refunds took back');
select ok(
  (select f ->> 'suggested_action' like 'Expected after a refund%' from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'refunded')),
  'a clawback below zero is explained as the documented policy');
select ok(
  (select f ->> 'suggested_action' like 'Not explained by refunds%' from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'edited')),
  'an unexplained negative balance points at balance_mismatches');

select public.fix_all_credits(dry_run => false, actor => 'test-115', reason => 'fix all');
select is(
  (select b.balance from public.user_credit_balance b where b.user_id = (select id from ids where name = 'refunded')),
  -80::bigint, 'fix_all leaves a negative balance the ledger justifies');
select is(
  (select b.balance from public.user_credit_balance b where b.user_id = (select id from ids where name = 'edited')),
  50::bigint, 'the edited one is a mismatch, and recomputed to the ledger');
select set_eq(
  $$ select id from tests.named(public.diagnose_credits(100000), 'negative_balances', 'user_id') except select id from baseline $$,
  $$ select id::text from ids where name = 'refunded' $$,
  'only the justified negative balance is still named'
);

select * from finish();
rollback;
