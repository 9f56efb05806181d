-- Test: balance_mismatches: edited balance, edited total, missing row, row without ledger are named; recompute rewrites them to the ledger once, audited.
begin;
select plan(22);

create temp table baseline as
select tests.named(public.diagnose_credits(100000), 'balance_mismatches', 'user_id') as id;

create temp table ids (name text primary key, id uuid);
insert into ids values ('edited', tests.create_user()), ('total', tests.create_user()), ('missing', tests.create_user()),
  ('no_ledger', tests.create_user()), ('fine', tests.create_user());
select tests.pay((select id from ids where name = 'edited'), 'cs_t112_1', 300);
select public.spend_credits((select id from ids where name = 'edited'), 20, 't112-spend', null);
select tests.pay((select id from ids where name = 'total'), 'cs_t112_2', 100);
select tests.pay((select id from ids where name = 'missing'), 'cs_t112_3', 50);
select tests.pay((select id from ids where name = 'fine'), 'cs_t112_4', 10);

update public.user_credit_balance set balance = 1000 where user_id = (select id from ids where name = 'edited');
update public.user_credit_balance set total_recharged = 0 where user_id = (select id from ids where name = 'total');
delete from public.user_credit_balance where user_id = (select id from ids where name = 'missing');
insert into public.user_credit_balance (user_id, balance, total_recharged)
values ((select id from ids where name = 'no_ledger'), 70, 70);

create temp table report as select public.diagnose_credits(100000) as r;
create temp table findings as
select f from report, jsonb_array_elements(r #> '{categories,balance_mismatches,findings}') f;

select set_eq(
  $$ select id from tests.named((select r from report), 'balance_mismatches', 'user_id') except select id from baseline $$,
  $$ select id::text from ids where name in ('edited', 'total', 'missing', 'no_ledger') $$,
  'the diagnosis names exactly the four users whose cache disagrees with the ledger'
);
select is(
  (select f - 'suggested_action' from findings where f ->> 'user_id' = (select id::text from ids where name = 'edited')),
  jsonb_build_object('user_id', (select id from ids where name = 'edited'), 'balance_row_missing', false,
    'cached_balance', 1000, 'ledger_balance', 280, 'cached_total_recharged', 300, 'ledger_total_recharged', 300,
    'ledger_entries', 2),
  'an edited balance is named with the cached and the ledger figures'
);
select is(
  (select row(f ->> 'balance_row_missing', f ->> 'cached_balance', f ->> 'ledger_balance')::text from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'missing')),
  row('true', null, '50')::text, 'a user with entries but no balance row is named');
select is(
  (select row(f ->> 'cached_balance', f ->> 'ledger_balance', f ->> 'ledger_entries')::text from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'no_ledger')),
  row('70', '0', '0')::text, 'a balance with no ledger behind it is named');
select ok(
  (select f ->> 'suggested_action' like '%balance 1000 -> 280%recompute_credit_balances%' from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'edited')),
  'the suggested action gives the change and the call');

-- Dry run.
create temp table fp as select tests.fingerprint() as v;
create temp table dry as select public.recompute_credit_balances(dry_run => true) as r;
select is(tests.fingerprint(), (select v from fp), 'the dry run changes nothing');
select set_eq(
  $$ select c ->> 'target_id' from dry, jsonb_array_elements(r -> 'changes') c $$,
  $$ select id from baseline union all select id::text from ids where name in ('edited', 'total', 'missing', 'no_ledger') $$,
  'the dry run reports exactly the users a real run would rewrite'
);

-- One user.
select is(
  (select (public.recompute_credit_balances(user_id => (select id from ids where name = 'fine'), dry_run => false,
     actor => 'test-112', reason => 'consistent user') ->> 'nothing_to_do')::boolean),
  true, 'recomputing a consistent user does nothing');
create temp table one as
select public.recompute_credit_balances(user_id => (select id from ids where name = 'edited'), dry_run => false,
  actor => 'test-112', reason => 'edited balance') as r;
select is(
  (select row(b.balance, b.total_recharged)::text from public.user_credit_balance b where b.user_id = (select id from ids where name = 'edited')),
  row(280, 300)::text, 'the edited balance is the ledger''s again');
select is(
  (select row(l.action, l.target_type, l.user_id, l.before, l.after, l.actor, l.reason, l.dry_run)::text
   from credit_private.repair_log l, one where l.run_id = (one.r ->> 'run_id')::uuid),
  row('recompute_balances', 'user_credit_balance', (select id from ids where name = 'edited'),
    '{"balance": 1000, "total_recharged": 300}'::jsonb, '{"balance": 280, "total_recharged": 300}'::jsonb,
    'test-112', 'edited balance', false)::text,
  'its audit row holds who, why, before and after');
select throws_ok(
  $$ select public.recompute_credit_balances(user_id => '00000000-0000-4000-8000-000000000000', dry_run => false,
       actor => 'test-112', reason => 'unknown') $$,
  'PT404', null, 'an unknown user is an error (HTTP 404 through PostgREST)');

-- All.
create temp table all_run as
select public.recompute_credit_balances(dry_run => false, actor => 'test-112', reason => 'all') as r;
select set_eq(
  $$ select c ->> 'target_id' from all_run, jsonb_array_elements(r -> 'changes') c $$,
  $$ select id from baseline union all select id::text from ids where name in ('total', 'missing', 'no_ledger') $$,
  'recomputing all rewrites the three remaining users'
);
select is(
  (select row(b.balance, b.total_recharged)::text from public.user_credit_balance b where b.user_id = (select id from ids where name = 'total')),
  row(100, 100)::text, 'an edited total_recharged is the ledger''s again');
select is(
  (select row(b.balance, b.total_recharged)::text from public.user_credit_balance b where b.user_id = (select id from ids where name = 'missing')),
  row(50, 50)::text, 'the missing balance row is back with the ledger''s sums');
select is(
  (select c -> 'before' from all_run, jsonb_array_elements(r -> 'changes') c
   where c ->> 'target_id' = (select id::text from ids where name = 'missing')),
  '{"balance_row": "missing"}'::jsonb, 'and its audit says the row was missing');
select is(
  (select row(b.balance, b.total_recharged)::text from public.user_credit_balance b where b.user_id = (select id from ids where name = 'no_ledger')),
  row(0, 0)::text, 'a balance no ledger entry justifies goes to zero: no credits without entries');
select is(
  (select count(*) from tests.named(public.diagnose_credits(100000), 'balance_mismatches', 'user_id')),
  0::bigint, 'no mismatch is left');
select is(
  (select count(*) from public.credit_transaction t where t.user_id in (select id from ids)),
  5::bigint, 'recomputing wrote no ledger entry');

-- Second run.
create temp table fp2 as select tests.fingerprint() as v;
select is(
  (select (public.recompute_credit_balances(dry_run => false, actor => 'test-112', reason => 'second') ->> 'nothing_to_do')::boolean),
  true, 'a second recompute has nothing to do');
select is(tests.fingerprint(), (select v from fp2), 'and changes nothing');

-- The cached balance is what spending checks: it now agrees with the ledger.
select throws_ok(
  format($$ select public.spend_credits(%L, 281, 't112-overdraft', null) $$, (select id from ids where name = 'edited')),
  'CR001', null, 'the user can no longer spend the credits the edit invented');
select is(
  (select (public.spend_credits((select id from ids where name = 'edited'), 280, 't112-all', null) ->> 'balance_after')::bigint),
  0::bigint, 'but can spend exactly what the ledger holds');

select * from finish();
rollback;
