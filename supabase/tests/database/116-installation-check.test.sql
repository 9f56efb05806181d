-- Test: installation: dropped/altered policies, revoked/extra grants, definer, search_path, RLS, views, schema, cron jobs, permission errors are named exactly and restored once.
begin;
select plan(30);

create function pg_temp.installation_findings(p_report jsonb)
returns table (kind text, name text, problem text)
language sql
as $$
  select f ->> 'kind', f ->> 'name', f ->> 'problem'
  from jsonb_array_elements(p_report #> '{categories,installation,findings}') f
$$;

create temp table baseline as select * from pg_temp.installation_findings(public.diagnose_credits(100000));

create temp table ids (name text primary key, id uuid);
insert into ids values ('alice', tests.create_user()), ('bob', tests.create_user());
select tests.pay((select id from ids where name = 'alice'), 'cs_t116_a', 30);
select tests.pay((select id from ids where name = 'bob'), 'cs_t116_b', 20);

-- Break the installation in every way the check knows.
drop policy "Users can read their own recharges" on public.credit_recharge;
alter policy "Users can read their own credit balance" on public.user_credit_balance using (true);
revoke select on public.credit_transaction from authenticated;
grant insert on public.credit_recharge to anon;
revoke execute on function public.handle_stripe_event(jsonb) from service_role;
alter function public.spend_credits(uuid, bigint, text, text) security invoker;
alter function public.diagnose_credits(integer) reset search_path;
grant execute on function credit_private.post_ledger_entry(uuid, text, bigint, text, uuid, text) to public;
alter table public.user_credit_balance disable row level security;
create policy "Anyone can read balances" on public.user_credit_balance for select to anon using (true);
alter view credit_private.orphaned_recharges set (security_invoker = off);
grant usage on schema credit_private to anon;
drop function credit_private.proportional_credits(bigint, bigint, bigint);
select credit_private.expect_cron_job('t116-job', '*/15 * * * *', 'select 1', 'test-116');
insert into credit_private.stripe_webhook_event (event_id, type, payload, status, attempts, last_error, last_error_code)
values ('evt_t116_rls', 'checkout.session.completed', '{"id": "evt_t116_rls"}', 'failed', 1,
  'permission denied for table credit_transaction', '42501');

create temp table report as select public.diagnose_credits(100000) as r;

select set_eq(
  $$ select * from pg_temp.installation_findings((select r from report)) except select * from baseline $$,
  $$ values
    ('policy', '"Users can read their own recharges" on public.credit_recharge', 'policy is missing'),
    ('policy', '"Users can read their own credit balance" on public.user_credit_balance', 'policy differs from the package''s definition'),
    ('table', 'public.credit_transaction', 'authenticated lacks SELECT'),
    ('table', 'public.credit_recharge', 'anon has INSERT, which the package does not grant'),
    ('function', 'public.handle_stripe_event(jsonb)', 'service_role cannot execute it'),
    ('function', 'public.spend_credits(uuid,bigint,text,text)', 'wrong security mode'),
    ('function', 'public.diagnose_credits(integer)', 'search_path is not pinned'),
    ('function', 'credit_private.post_ledger_entry(uuid,text,bigint,text,uuid,text)', 'anon can execute it'),
    ('function', 'credit_private.post_ledger_entry(uuid,text,bigint,text,uuid,text)', 'authenticated can execute it'),
    ('function', 'credit_private.post_ledger_entry(uuid,text,bigint,text,uuid,text)', 'service_role can execute it'),
    ('function', 'credit_private.post_ledger_entry(uuid,text,bigint,text,uuid,text)', 'PUBLIC can execute it'),
    ('table', 'public.user_credit_balance', 'row level security is disabled'),
    ('table', 'public.user_credit_balance', 'unexpected policy "Anyone can read balances"'),
    ('view', 'credit_private.orphaned_recharges', 'view is not security_invoker'),
    ('schema', 'credit_private', 'anon has USAGE on the schema'),
    ('cron_job', 't116-job', 'cron job is not scheduled'),
    ('function', 'credit_private.proportional_credits(bigint,bigint,bigint)', 'function is missing'),
    ('inbox_event', 'evt_t116_rls', 'checkout.session.completed event failed with a permission error (SQLSTATE 42501)')
  $$,
  'the installation check names exactly what was broken'
);
select is(
  (select row(f ->> 'expected', f ->> 'actual', f ->> 'repairable')::text
   from report, jsonb_array_elements(r #> '{categories,installation,findings}') f
   where f ->> 'name' = 'public.spend_credits(uuid,bigint,text,text)'),
  row('security definer', 'security invoker', 'true')::text, 'a finding says what was expected and what is there');
select is(
  (select f ->> 'actual'
   from report, jsonb_array_elements(r #> '{categories,installation,findings}') f
   where f ->> 'name' = 'public.diagnose_credits(integer)'),
  'not set (inherits the caller''s)', 'an unpinned search_path is shown as such');
select ok(
  (select f ->> 'suggested_action' like 'Re-apply migration 20261126002200_register_core_expected_objects%'
   from report, jsonb_array_elements(r #> '{categories,installation,findings}') f
   where f ->> 'name' = 'credit_private.proportional_credits(bigint,bigint,bigint)'),
  'a missing function names the migration that defines it');
select ok(
  (select (f ->> 'repairable')::boolean = false and f ->> 'suggested_action' like 'Review this policy%'
   from report, jsonb_array_elements(r #> '{categories,installation,findings}') f
   where f ->> 'problem' = 'unexpected policy "Anyone can read balances"'),
  'an unexpected policy is reported for review, not dropped');
select ok(
  (select not i.ok and i.problems[1] like 'cron job is not scheduled%' from credit_private.installation_check i
   where i.kind = 'cron_job' and i.name = 't116-job'),
  'the installation view lists the expected cron job as a problem');
select is(
  (select count(*) from credit_private.installation_check i where i.ok),
  (select count(*) from credit_private.installation_check) - 13,
  'the installation view lists every expected object, all others ok');

-- Dry run.
create temp table fp as select tests.fingerprint() as v;
create temp table dry as select public.restore_credit_installation(dry_run => true) as r;
select is(tests.fingerprint(), (select v from fp), 'the dry run changes nothing');
select is((select (r ->> 'changed')::int from dry), 12, 'the dry run would restore the twelve repairable objects');
select set_eq(
  $$ select k ->> 'target_id' from dry, jsonb_array_elements(r -> 'skipped') k $$,
  $$ values ('public.user_credit_balance'), ('credit_private.proportional_credits(bigint,bigint,bigint)') $$,
  'and lists the unexpected policy and the missing function as skipped'
);

-- Restore.
create temp table restore as
select public.restore_credit_installation(dry_run => false, actor => 'test-116', reason => 'restore') as r;
select set_eq(
  $$ select c ->> 'target_type' as kind, c ->> 'target_id' as name from restore, jsonb_array_elements(r -> 'changes') c $$,
  $$ select c ->> 'target_type' as kind, c ->> 'target_id' as name from dry, jsonb_array_elements(r -> 'changes') c $$,
  'the real run restores exactly what the dry run announced'
);
select set_eq(
  $$ select * from pg_temp.installation_findings(public.diagnose_credits(100000)) except select * from baseline $$,
  $$ values
    ('table', 'public.user_credit_balance', 'unexpected policy "Anyone can read balances"'),
    ('function', 'credit_private.proportional_credits(bigint,bigint,bigint)', 'function is missing'),
    ('inbox_event', 'evt_t116_rls', 'checkout.session.completed event failed with a permission error (SQLSTATE 42501)')
  $$,
  'only what a repair must not or cannot do is left'
);
select is(
  credit_private.policy_definition('public.credit_recharge', 'Users can read their own recharges'),
  (select e.definition from credit_private.expected_object e
   where e.kind = 'policy' and e.name = '"Users can read their own recharges" on public.credit_recharge'),
  'the dropped policy is back exactly as registered');
select policies_are('public', 'user_credit_balance',
  array['Users can read their own credit balance', 'Anyone can read balances'],
  'the altered policy is re-created, the unexpected one kept');
select ok((select c.relrowsecurity from pg_class c where c.oid = 'public.user_credit_balance'::regclass), 'RLS is on again');
select ok(
  (select 'security_invoker=on' = any (c.reloptions) from pg_class c where c.oid = 'credit_private.orphaned_recharges'::regclass),
  'the view is security_invoker again');
select ok(not has_schema_privilege('anon', 'credit_private', 'USAGE'), 'anon lost USAGE on the private schema');
select ok(
  not has_function_privilege('anon', 'credit_private.post_ledger_entry(uuid,text,bigint,text,uuid,text)', 'EXECUTE')
  and not has_function_privilege('service_role', 'credit_private.post_ledger_entry(uuid,text,bigint,text,uuid,text)', 'EXECUTE'),
  'nobody but the owner may execute the ledger writer');
select ok((select p.prosecdef from pg_proc p where p.oid = 'public.spend_credits(uuid,bigint,text,text)'::regprocedure),
  'spend_credits is SECURITY DEFINER again');
select ok((select 'search_path=""' = any (p.proconfig) from pg_proc p where p.oid = 'public.diagnose_credits(integer)'::regprocedure),
  'diagnose_credits pins its search_path again');
select is(
  (select row(j.schedule, j.command, j.active)::text from cron.job j where j.jobname = 't116-job'),
  row('*/15 * * * *', 'select 1', true)::text, 'the expected cron job is scheduled');

-- The restored installation works for each role.
select tests.authenticate_as((select id from ids where name = 'alice'));
select is((select count(*) from public.credit_transaction), 1::bigint, 'authenticated reads its own transactions again');
select is((select count(*) from public.credit_recharge), 1::bigint, 'and only its own recharges');
select tests.clear_authentication();
select throws_ok(
  $$ insert into public.credit_recharge (user_id, credits) values (gen_random_uuid(), 1) $$,
  '42501', null, 'anon can no longer insert recharges');
select tests.authenticate_as_service_role();
select is(
  (public.handle_stripe_event('{"id": "evt_t116_ok", "type": "customer.created", "data": {"object": {}}}'::jsonb) ->> 'status'),
  'ignored', 'service_role can call the webhook RPC again');
select tests.reset_identity();

-- Second run and audit.
create temp table fp2 as select tests.fingerprint() as v;
create temp table second as
select public.restore_credit_installation(dry_run => false, actor => 'test-116', reason => 'again') as r;
select is((select (r ->> 'nothing_to_do')::boolean from second), true, 'a second restore has nothing to do');
select is(tests.fingerprint(), (select v from fp2), 'and changes nothing');
select is(
  (select count(*) from credit_private.repair_log l, restore
   where l.run_id = (restore.r ->> 'run_id')::uuid and l.actor = 'test-116' and l.reason = 'restore' and not l.dry_run
     and l.action = 'restore_installation' and jsonb_array_length(l.before -> 'problems') > 0),
  12::bigint, 'one audit row per restored object, with its problems before');

-- Cron jobs that changed or were paused are restored too.
select cron.alter_job((select jobid from cron.job where jobname = 't116-job'), schedule => '0 * * * *', active => false);
select set_eq(
  $$ select problem from pg_temp.installation_findings(public.diagnose_credits(100000)) where kind = 'cron_job' $$,
  $$ values ('cron job differs from the package''s definition'), ('cron job is inactive') $$,
  'an altered and paused cron job is named'
);
select public.restore_credit_installation(dry_run => false, actor => 'test-116', reason => 'cron');
select is(
  (select row(j.schedule, j.active)::text from cron.job j where j.jobname = 't116-job'),
  row('*/15 * * * *', true)::text, 'and restored');

select * from finish();
rollback;
