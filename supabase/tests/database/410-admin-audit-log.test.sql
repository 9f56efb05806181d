-- Test: the admin endpoint's audit log: privileges, a refusal logged in one call, a started call completed once, checks on every value, bounded retention cleanup, registration.
begin;
select plan(37);

create temp table rpcs (name text, args text[]);
insert into rpcs values
  ('log_admin_call', array['text', 'text', 'text', 'text', 'jsonb', 'boolean', 'text', 'text', 'integer', 'text']),
  ('finish_admin_call', array['bigint', 'text', 'integer', 'text', 'bigint', 'bigint', 'uuid']);

select is_definer('public', r.name, r.args, format('%s is SECURITY DEFINER', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'anon', '{}', format('anon cannot execute %s', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'authenticated', '{}',
  format('authenticated cannot execute %s', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'service_role', array['EXECUTE'],
  format('service_role can execute %s', r.name)) from rpcs r;
select is_empty(
  $$ select r.name from pg_temp.rpcs r
     join pg_proc p on p.oid = to_regprocedure(format('public.%s(%s)', r.name, array_to_string(r.args, ',')))
     where not 'search_path=""' = any (coalesce(p.proconfig, '{}'))
        or obj_description(p.oid, 'pg_proc') is null $$,
  'both RPCs pin search_path and say what they guarantee');
select is_empty(
  $$ select e.name, p.problem from credit_private.expected_object e
       cross join lateral credit_private.expected_object_problems(e.kind, e.name) p
     where e.registered_by = '20261126004900_register_admin_expected_objects' $$,
  'every object of the admin endpoint is registered with the installation check and intact');
select is(
  (select count(*) from credit_private.expected_object e
   where e.registered_by = '20261126004900_register_admin_expected_objects'),
  5::bigint, 'two tables and three RPCs are registered');
select ok((select relrowsecurity from pg_class where oid = 'credit_private.admin_audit_log'::regclass),
  'RLS is enabled on admin_audit_log');
select is(credit_private.relation_privileges('credit_private.admin_audit_log'),
  '{"anon": [], "authenticated": [], "service_role": []}'::jsonb, 'no API role holds a privilege on admin_audit_log');
select isnt(obj_description('credit_private.admin_audit_log'::regclass, 'pg_class'), null,
  'admin_audit_log says what it guarantees');

select tests.clear_authentication();
select throws_ok($$ select public.log_admin_call('unauthenticated', '198.51.100.1', 'POST') $$, '42501', null,
  'anon cannot write the audit log');
select tests.reset_identity();
select tests.authenticate_as(tests.create_user());
select throws_ok($$ select public.log_admin_call('unauthenticated', '198.51.100.1', 'POST') $$, '42501', null,
  'authenticated cannot write the audit log');
select throws_ok($$ select * from credit_private.admin_audit_log $$, '42501', null, 'nor read it');
select tests.reset_identity();

-- A refusal: one call, final.
select tests.authenticate_as_service_role();
create temp table ids (name text primary key, id bigint);
grant all on ids to service_role;
insert into ids select 'refusal', public.log_admin_call('unauthenticated', '198.51.100.2', 'POST', 'fix_all',
  null, null, null, 'unauthorized', 401, 'unauthorized');
select throws_ok($$ select * from credit_private.admin_audit_log $$, '42501', null,
  'service_role cannot read the log directly');
select tests.reset_identity();
select is(
  (select row(l.key_name, l.client, l.method, l.action, l.params, l.outcome, l.http_status, l.error_code,
     l.finished_at is not null)::text
   from credit_private.admin_audit_log l where l.id = (select id from ids where name = 'refusal')),
  row('unauthenticated', '198.51.100.2', 'POST', 'fix_all', null::jsonb, 'unauthorized', 401, 'unauthorized', true)::text,
  'a refusal is logged with its outcome, finished at once');

-- An allowed call: started, then finished once.
select tests.authenticate_as_service_role();
insert into ids select 'call', public.log_admin_call('ops-2026', '198.51.100.3', 'POST', 'fix_specific_recharge',
  jsonb_build_object('rechargeId', '00000000-0000-4000-8000-000000000001'), false, 'INC-1');
select tests.reset_identity();
select is(
  (select row(l.outcome, l.http_status, l.finished_at)::text from credit_private.admin_audit_log l
   where l.id = (select id from ids where name = 'call')),
  row('started', null::integer, null::timestamptz)::text,
  'an allowed call is logged as started before it acts');
select tests.authenticate_as_service_role();
select lives_ok(
  $$ select public.finish_admin_call((select id from pg_temp.ids where name = 'call'), 'ok', 200, null, 1, 1,
       '00000000-0000-4000-8000-0000000000aa') $$,
  'service_role completes it');
select throws_ok(
  $$ select public.finish_admin_call((select id from pg_temp.ids where name = 'call'), 'database_error', 500) $$,
  'PT404', null, 'a finished call is never rewritten');
select throws_ok(
  $$ select public.finish_admin_call((select id from pg_temp.ids where name = 'refusal'), 'ok', 200) $$,
  'PT404', null, 'nor is a refusal');
select throws_ok($$ select public.finish_admin_call(-1, 'ok', 200) $$, 'PT404', null, 'an unknown call is PT404');
select tests.reset_identity();
select is(
  (select row(l.key_name, l.action, l.params, l.dry_run, l.reason, l.outcome, l.http_status, l.found, l.changed,
     l.run_id, l.finished_at is not null)::text
   from credit_private.admin_audit_log l where l.id = (select id from ids where name = 'call')),
  row('ops-2026', 'fix_specific_recharge', '{"rechargeId": "00000000-0000-4000-8000-000000000001"}'::jsonb, false,
    'INC-1', 'ok', 200, 1::bigint, 1::bigint, '00000000-0000-4000-8000-0000000000aa'::uuid, true)::text,
  'the completed row holds the outcome, the counts and the repair run');

-- Every value is checked; a bad one is a bad argument (22023).
select tests.authenticate_as_service_role();
insert into ids select 'open', public.log_admin_call('default', '198.51.100.4', 'POST', 'diagnose');
select throws_ok($$ select public.finish_admin_call((select id from pg_temp.ids where name = 'open'), 'started', 200) $$,
  '22023', null, 'finishing needs a final outcome');
select throws_ok($$ select public.finish_admin_call((select id from pg_temp.ids where name = 'open'), 'ok', null) $$,
  '22023', null, 'and an http_status');
select throws_ok($$ select public.finish_admin_call((select id from pg_temp.ids where name = 'open'), 'ok', 200, null, -1) $$,
  '22023', null, 'counts are not negative');
select throws_ok($$ select public.log_admin_call('has space', '198.51.100.5', 'POST') $$, '22023', null,
  'a key name is 1-64 letters, digits, _ . -');
select throws_ok($$ select public.log_admin_call(null, '198.51.100.5', 'POST') $$, '22023', null, 'a key name is required');
select throws_ok($$ select public.log_admin_call('default', repeat('1', 129), 'POST') $$, '22023', null,
  'a client is at most 128 characters');
select throws_ok($$ select public.log_admin_call('default', '198.51.100.5', 'POST', 'Drop Table') $$, '22023', null,
  'an action is snake_case');
select throws_ok($$ select public.log_admin_call('default', '198.51.100.5', 'POST', 'diagnose', '[1]') $$, '22023', null,
  'params are an object');
select throws_ok(
  $$ select public.log_admin_call('default', '198.51.100.5', 'POST', 'diagnose', null, null, null, 'unauthorized') $$,
  '22023', null, 'a refusal needs its http_status');
select throws_ok(
  $$ select public.log_admin_call('default', '198.51.100.5', 'POST', 'diagnose', null, null, null, 'started', 200) $$,
  '22023', null, 'a started call has none yet');
select tests.reset_identity();

-- Retention: rows past it are deleted a few at a time as calls are logged.
insert into credit_private.admin_audit_log (created_at, key_name, client, method, outcome, http_status)
select now() - interval '400 days' - make_interval(secs => i), 'unauthenticated', 'old-' || i, 'POST', 'unauthorized', 401
from generate_series(1, 120) i;
insert into credit_private.admin_audit_log (created_at, key_name, client, method, outcome, http_status)
values (now() - interval '300 days', 'default', 'recent', 'POST', 'ok', 200);
select tests.authenticate_as_service_role();
select public.log_admin_call('default', '198.51.100.6', 'POST', 'diagnose', null, null, null, 'ok', 200);
select tests.reset_identity();
select is((select count(*) from credit_private.admin_audit_log where client like 'old-%'), 20::bigint,
  'one call deletes the 100 oldest rows past the retention');
select is((select count(*) from credit_private.admin_audit_log where client = 'recent'), 1::bigint,
  'rows within the retention are kept');

select * from finish();
rollback;
