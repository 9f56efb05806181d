-- Test: orphaned_recharges: a deleted recharge entry and a credited recharge without entry are named, dry-run, back-filled once, audited.
begin;
select plan(28);

create temp table baseline as
select tests.named(public.diagnose_credits(100000), 'orphaned_recharges', 'recharge_id') as id;

create temp table ids (name text primary key, id uuid);
insert into ids values ('alice', tests.create_user()), ('bob', tests.create_user());
insert into ids select 'r_deleted', tests.pay((select id from ids where name = 'alice'), 'cs_t110_a1', 300);
insert into ids select 'r_kept', tests.pay((select id from ids where name = 'alice'), 'cs_t110_a2', 200);
insert into ids select 'r_bob', tests.pay((select id from ids where name = 'bob'), 'cs_t110_b1', 100);

-- 1. A deleted entry: the recharge stays completed, its entry is gone.
delete from public.credit_transaction where recharge_id = (select id from ids where name = 'r_deleted');
-- 2. A credited recharge that never got an entry (data from before the package).
insert into public.credit_recharge (user_id, credits, amount_cents, status, completed_at, stripe_checkout_session_id)
values ((select id from ids where name = 'bob'), 40, 400, 'completed', now() - interval '2 days', 'cs_t110_legacy');
insert into ids select 'r_legacy', id from public.credit_recharge where stripe_checkout_session_id = 'cs_t110_legacy';
-- 3. A pending recharge: never paid, so never credited by a repair.
insert into public.credit_recharge (user_id, credits, stripe_checkout_session_id)
values ((select id from ids where name = 'bob'), 999, 'cs_t110_pending');
insert into ids select 'r_pending', id from public.credit_recharge where stripe_checkout_session_id = 'cs_t110_pending';

create temp table report as select public.diagnose_credits(100000) as r;

select set_eq(
  $$ select id from tests.named((select r from report), 'orphaned_recharges', 'recharge_id')
     except select id from baseline $$,
  $$ select id::text from ids where name in ('r_deleted', 'r_legacy') $$,
  'the diagnosis names exactly the recharge whose entry was deleted and the legacy recharge'
);
select is(
  (select f - 'suggested_action' - 'updated_at' - 'completed_at'
   from report, jsonb_array_elements(r #> '{categories,orphaned_recharges,findings}') f
   where f ->> 'recharge_id' = (select id::text from ids where name = 'r_legacy')),
  jsonb_build_object('recharge_id', (select id from ids where name = 'r_legacy'),
    'user_id', (select id from ids where name = 'bob'), 'credits', 40, 'amount_cents', 400, 'currency', 'usd',
    'status', 'completed', 'stripe_checkout_session_id', 'cs_t110_legacy', 'stripe_payment_intent_id', null,
    'key_held_by_transaction_id', null),
  'a finding names the recharge, its user and its amounts'
);
select ok(
  (select f ->> 'suggested_action' like '%public.fix_orphaned_recharges(recharge_id => '''
     || (select id from ids where name = 'r_legacy') || '''%'
   from report, jsonb_array_elements(r #> '{categories,orphaned_recharges,findings}') f
   where f ->> 'recharge_id' = (select id::text from ids where name = 'r_legacy')),
  'a finding suggests the repair call for that recharge'
);
select is((select (r #>> '{counts,orphaned_recharges}')::bigint from report),
  (select count(*) + 2 from baseline), 'the count is exact');

-- Dry run: reports the two back-fills and changes nothing.
create temp table fp as select tests.fingerprint() as v;
create temp table dry as select public.fix_orphaned_recharges(dry_run => true) as r;
select is(tests.fingerprint(), (select v from fp), 'the dry run changes nothing');
select is((select (r ->> 'dry_run')::boolean from dry), true, 'the dry run says it is one');
select set_eq(
  $$ select c ->> 'target_id' from dry, jsonb_array_elements(r -> 'changes') c $$,
  $$ select id::text from baseline union all select id::text from ids where name in ('r_deleted', 'r_legacy') $$,
  'the dry run reports the back-fill of exactly the orphaned recharges'
);
select is(
  (select count(*) from credit_private.repair_log l, dry
   where l.run_id = (dry.r ->> 'run_id')::uuid and l.dry_run and l.action = 'fix_orphaned_recharges'),
  (select count(*) + 2 from baseline), 'the dry run writes one audit row per would-be change, marked dry_run');

-- The one-recharge repair: the legacy recharge only.
select throws_ok(
  format('select public.fix_orphaned_recharges(recharge_id => %L, dry_run => false)', (select id from ids where name = 'r_legacy')),
  '22023', null, 'a real repair without actor and reason is refused'
);
create temp table one as
select public.fix_orphaned_recharges(recharge_id => (select id from ids where name = 'r_legacy'), dry_run => false,
  actor => 'test-110', reason => 'legacy recharge') as r;
select is((select (r ->> 'changed')::int from one), 1, 'repairing one recharge changes one');
select is(
  (select count(*) from public.credit_transaction t
   where t.recharge_id = (select id from ids where name = 'r_legacy') and t.type = 'recharge' and t.amount = 40),
  1::bigint, 'the legacy recharge now has its one recharge entry of 40 credits');
select is(
  (select row(b.balance, b.total_recharged)::text from public.user_credit_balance b where b.user_id = (select id from ids where name = 'bob')),
  row(140, 140)::text, 'bob is credited 40 on top of his 100');
select is(
  (select row(l.actor, l.reason, l.dry_run, l.target_type, l.user_id, l.before ->> 'balance', l.after ->> 'balance')::text
   from credit_private.repair_log l, one where l.run_id = (one.r ->> 'run_id')::uuid),
  row('test-110', 'legacy recharge', false, 'credit_recharge', (select id from ids where name = 'bob'), '100', '140')::text,
  'the audit row says who, why, what, before and after'
);
select is(
  (select (r ->> 'nothing_to_do')::boolean from (
     select public.fix_orphaned_recharges(recharge_id => (select id from ids where name = 'r_legacy'), dry_run => false,
       actor => 'test-110', reason => 'again') as r) x),
  true, 'repairing the same recharge again does nothing');

-- All of them.
create temp table all_run as
select public.fix_orphaned_recharges(dry_run => false, actor => 'test-110', reason => 'all') as r;
select set_eq(
  $$ select c ->> 'target_id' from all_run, jsonb_array_elements(r -> 'changes') c $$,
  $$ select id::text from baseline union all select id::text from ids where name = 'r_deleted' $$,
  'repairing all back-fills the remaining orphan'
);
select is(
  (select count(*) from public.credit_transaction t
   where t.recharge_id = (select id from ids where name = 'r_deleted') and t.type = 'recharge'),
  1::bigint, 'the deleted entry is back, once');
select is((credit_private.ledger_totals((select id from ids where name = 'alice'))).balance, 500::bigint,
  'alice''s ledger holds both her recharges again');
select is(
  (select count(*) from tests.named(public.diagnose_credits(100000), 'orphaned_recharges', 'recharge_id')),
  0::bigint, 'no orphaned recharge is left');

create temp table fp2 as select tests.fingerprint() as v;
create temp table second as
select public.fix_orphaned_recharges(dry_run => false, actor => 'test-110', reason => 'second') as r;
select is((select (r ->> 'nothing_to_do')::boolean from second), true, 'a second repair has nothing to do');
select is(tests.fingerprint(), (select v from fp2), 'a second repair changes nothing');
select is(
  (select count(*) from credit_private.repair_log l, second where l.run_id = (second.r ->> 'run_id')::uuid),
  0::bigint, 'a repair with nothing to do writes no audit row');
select is(
  (select count(*) from credit_private.repair_log l where not l.dry_run and l.actor = 'test-110'),
  (select count(*) + 2 from baseline), 'one real audit row per back-filled recharge');

-- Never invent credits.
create temp table pending as
select public.fix_orphaned_recharges(recharge_id => (select id from ids where name = 'r_pending'), dry_run => false,
  actor => 'test-110', reason => 'pending') as r;
select is((select (r ->> 'changed')::int from pending), 0, 'a pending recharge is not credited');
select ok((select r #>> '{skipped,0,reason}' like 'not credited (status pending)%' from pending),
  'and the result says why');
select is(
  (select count(*) from public.credit_transaction t where t.recharge_id = (select id from ids where name = 'r_pending')),
  0::bigint, 'no entry exists for the pending recharge');
select throws_ok(
  $$ select public.fix_orphaned_recharges(recharge_id => '00000000-0000-4000-8000-000000000000', dry_run => false,
       actor => 'test-110', reason => 'unknown') $$,
  'PT404', null, 'an unknown recharge is an error (HTTP 404 through PostgREST)'
);

-- A recharge whose key another entry holds is flagged for a human, not forced.
insert into public.credit_recharge (user_id, credits, status, completed_at, stripe_checkout_session_id)
values ((select id from ids where name = 'bob'), 10, 'completed', now(), 'cs_t110_keyheld');
insert into ids select 'r_keyheld', id from public.credit_recharge where stripe_checkout_session_id = 'cs_t110_keyheld';
insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
values ((select id from ids where name = 'bob'), 'adjustment', 10, 150, 'recharge:' || (select id from ids where name = 'r_keyheld'));
select ok(
  (select f ->> 'key_held_by_transaction_id' is not null and f ->> 'suggested_action' like 'Needs a human%'
   from jsonb_array_elements(public.diagnose_credits(100000) #> '{categories,orphaned_recharges,findings}') f
   where f ->> 'recharge_id' = (select id::text from ids where name = 'r_keyheld')),
  'an orphan whose key is taken is named with the entry holding it'
);
select ok(
  (select r -> 'changes' = '[]'::jsonb and r #>> '{skipped,0,reason}' like 'needs a human%'
   from (select public.fix_orphaned_recharges(dry_run => false, actor => 'test-110', reason => 'key held') as r) x),
  'the repair skips it and says a human is needed'
);

select * from finish();
rollback;
