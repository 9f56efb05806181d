-- Test: fix_all: every repairable inconsistency at once is repaired in order in one transaction, the dry run announces exactly that, a second run does nothing.
begin;
select plan(24);

create temp table ids (name text primary key, id uuid);
insert into ids values ('alice', tests.create_user()), ('bob', tests.create_user()), ('carol', tests.create_user()),
  ('dave', tests.create_user()), ('eve', tests.create_user()), ('frank', tests.create_user());
grant select on ids to service_role;

-- Start from a clean slate: whatever else the database holds is repaired first.
select public.fix_all_credits(dry_run => false, actor => 'test-120', reason => 'clean slate');

insert into ids select 'r_alice', tests.pay((select id from ids where name = 'alice'), 'cs_t120_alice', 300);
select tests.pay((select id from ids where name = 'bob'), 'cs_t120_bob', 100);
insert into ids select 'r_frank', tests.pay((select id from ids where name = 'frank'), 'cs_t120_frank', 10);

-- A deleted entry (alice), an edited balance (bob), a legacy recharge without entry (carol),
-- a delivery that failed on a revoked grant (dave), a dropped policy and a revoked grant,
-- a stuck recharge (eve), a dangling entry (frank).
delete from public.credit_transaction where recharge_id = (select id from ids where name = 'r_alice');
update public.user_credit_balance set balance = balance + 50 where user_id = (select id from ids where name = 'bob');
insert into public.credit_recharge (user_id, credits, status, completed_at, stripe_checkout_session_id)
values ((select id from ids where name = 'carol'), 40, 'completed', now() - interval '1 day', 'cs_t120_carol');
insert into credit_private.stripe_webhook_event (event_id, type, payload, status, attempts, last_error, last_error_code)
values ('evt_t120_dave', 'checkout.session.completed',
  jsonb_build_object('id', 'evt_t120_dave', 'type', 'checkout.session.completed', 'data', jsonb_build_object('object',
    jsonb_build_object('id', 'cs_t120_dave', 'client_reference_id', (select id from ids where name = 'dave'),
      'payment_status', 'paid', 'amount_total', 700, 'currency', 'usd', 'metadata', '{"credits": "70"}'::jsonb))),
  'failed', 2, 'permission denied for function handle_stripe_event', '42501');
drop policy "Users can read their own credit transactions" on public.credit_transaction;
revoke execute on function public.spend_credits(uuid, bigint, text, text) from service_role;
insert into public.credit_recharge (user_id, credits, stripe_checkout_session_id, created_at)
values ((select id from ids where name = 'eve'), 25, 'cs_t120_eve', now() - interval '2 hours');
update public.credit_recharge set status = 'pending', completed_at = null where id = (select id from ids where name = 'r_frank');

select is(
  (select r -> 'counts' from (select public.diagnose_credits(0) as r) x),
  '{"orphaned_recharges": 2, "dangling_recharge_entries": 1, "balance_mismatches": 2, "failed_webhooks": 1,
    "stuck_recharges": 1, "negative_balances": 0, "installation": 3}'::jsonb,
  'the diagnosis counts every planted inconsistency'
);

select throws_ok($$ select public.fix_all_credits(dry_run => false) $$, '22023', null,
  'a real fix_all needs an actor and a reason');

-- Dry run.
create temp table fp as select tests.fingerprint() as v;
create temp table dry as select public.fix_all_credits() as r;
select is(tests.fingerprint(), (select v from fp), 'fix_all defaults to a dry run, which changes nothing');
select is(
  (select array_agg(s ->> 'action' order by o) from dry, jsonb_array_elements(r -> 'steps') with ordinality as x (s, o)),
  array['restore_installation', 'retry_failed_webhooks', 'fix_orphaned_recharges', 'recompute_balances'],
  'the steps run in order: installation, webhooks, orphans, balances'
);
select is((select (r ->> 'changed')::int from dry), 7, 'the dry run announces seven changes');
select is(
  (select count(*) from credit_private.repair_log l, dry
   where l.run_id = (dry.r ->> 'run_id')::uuid and l.dry_run and l.requested_action = 'fix_all'),
  7::bigint, 'and logs them as a dry run of fix_all');

-- Real run.
create temp table fix as select public.fix_all_credits(dry_run => false, actor => 'test-120', reason => 'ticket 120') as r;
select set_eq(
  $$ select s ->> 'action' as action, c ->> 'target_type' as kind, c ->> 'target_id' as target
     from fix, jsonb_array_elements(r -> 'steps') s, jsonb_array_elements(s -> 'changes') c $$,
  $$ select s ->> 'action' as action, c ->> 'target_type' as kind, c ->> 'target_id' as target
     from dry, jsonb_array_elements(r -> 'steps') s, jsonb_array_elements(s -> 'changes') c $$,
  'the real run does exactly what the dry run announced'
);
select set_eq(
  $$ select s ->> 'action' as action, c ->> 'target_id' as target
     from fix, jsonb_array_elements(r -> 'steps') s, jsonb_array_elements(s -> 'changes') c $$,
  $$ values
    ('restore_installation', '"Users can read their own credit transactions" on public.credit_transaction'),
    ('restore_installation', 'public.spend_credits(uuid,bigint,text,text)'),
    ('retry_failed_webhooks', 'evt_t120_dave'),
    ('fix_orphaned_recharges', (select id::text from ids where name = 'r_alice')),
    ('fix_orphaned_recharges', (select r.id::text from public.credit_recharge r where r.stripe_checkout_session_id = 'cs_t120_carol')),
    ('recompute_balances', (select id::text from ids where name = 'alice')),
    ('recompute_balances', (select id::text from ids where name = 'bob'))
  $$,
  'each step repaired exactly its objects'
);
select is(
  (select jsonb_object_agg(u.name, jsonb_build_array(b.balance, b.total_recharged))
   from ids u join public.user_credit_balance b on b.user_id = u.id
   where u.name in ('alice', 'bob', 'carol', 'dave')),
  '{"alice": [300, 300], "bob": [100, 100], "carol": [40, 40], "dave": [70, 70]}'::jsonb,
  'every user holds exactly what was paid'
);
select is(
  (select count(*) from public.credit_transaction t where t.recharge_id = (select id from ids where name = 'r_alice')),
  1::bigint, 'alice''s recharge has one entry: back-filled once, and her cached double count recomputed away');
select is(
  (select r -> 'counts' from (select public.diagnose_credits(0) as r) x),
  '{"orphaned_recharges": 0, "dangling_recharge_entries": 1, "balance_mismatches": 0, "failed_webhooks": 0,
    "stuck_recharges": 1, "negative_balances": 0, "installation": 0}'::jsonb,
  'only what no payment justifies changing is still reported'
);
select is((select (r ->> 'logged')::int from fix), 7, 'the real run logged seven audit rows');
select is(
  (select count(distinct l.action) from credit_private.repair_log l, fix
   where l.run_id = (fix.r ->> 'run_id')::uuid and not l.dry_run and l.requested_action = 'fix_all'
     and l.actor = 'test-120' and l.reason = 'ticket 120'),
  4::bigint, 'under one run id, from all four steps, with actor and reason');
select ok(
  (select bool_and(l.db_role = 'postgres' and l.before is not null and l.after is not null)
   from credit_private.repair_log l, fix where l.run_id = (fix.r ->> 'run_id')::uuid),
  'every audit row has the calling role, before and after');

-- The repaired installation works.
select tests.authenticate_as((select id from ids where name = 'alice'));
select is((select count(*) from public.credit_transaction), 1::bigint, 'alice reads her transactions again');
select tests.authenticate_as_service_role();
select is(
  (public.spend_credits((select id from ids where name = 'dave'), 70, 't120-spend', null) ->> 'balance_after')::bigint,
  0::bigint, 'the backend can spend again, and dave''s credits are all there');
select tests.reset_identity();

-- Second run.
create temp table fp2 as select tests.fingerprint() as v;
create temp table second as select public.fix_all_credits(dry_run => false, actor => 'test-120', reason => 'again') as r;
select is((select (r ->> 'nothing_to_do')::boolean from second), true, 'a second fix_all has nothing to do');
select is((select (r ->> 'changed')::int from second), 0, 'changes nothing');
select is(tests.fingerprint(), (select v from fp2), 'and the data and installation are untouched');
select is((select (r ->> 'logged')::int from second), 0, 'and it logs nothing');

-- The webhook redelivering a payment that a repair credited changes nothing.
select is(
  (public.handle_stripe_event(jsonb_build_object('id', 'evt_t120_dave', 'type', 'checkout.session.completed',
     'data', jsonb_build_object('object', jsonb_build_object('id', 'cs_t120_dave')))) ->> 'duplicate')::boolean,
  true, 'a redelivery of the retried event is a duplicate');
select is(
  (public.handle_stripe_event(jsonb_build_object('id', 'evt_t120_carol_late', 'type', 'checkout.session.completed',
     'data', jsonb_build_object('object', jsonb_build_object('id', 'cs_t120_carol',
       'client_reference_id', (select id from ids where name = 'carol'), 'payment_status', 'paid',
       'metadata', '{"credits": "40"}'::jsonb)))) ->> 'status'),
  'processed', 'a late first delivery for the back-filled legacy recharge is applied');
select is(
  (select row(b.balance, b.total_recharged)::text from public.user_credit_balance b where b.user_id = (select id from ids where name = 'carol')),
  row(40, 40)::text, 'but credits nothing twice');
select is(
  (select count(*) from tests.named(public.diagnose_credits(100000), 'balance_mismatches', 'user_id')),
  0::bigint, 'and every balance still agrees with the ledger');

select * from finish();
rollback;
