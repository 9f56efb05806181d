-- Test: privileges of diagnosis and repair: every RPC is SECURITY DEFINER with a pinned search_path and executable by service_role only; no API role reaches the private views, tables or functions.
begin;
select plan(49);

create temp table rpcs (name text, args text[]);
insert into rpcs values
  ('diagnose_credits', array['integer']),
  ('diagnose_credits_incremental', array['text', 'boolean', 'integer']),
  ('fix_orphaned_recharges', array['uuid', 'boolean', 'text', 'text']),
  ('recompute_credit_balances', array['uuid', 'boolean', 'text', 'text']),
  ('retry_failed_webhooks', array['text', 'boolean', 'text', 'text']),
  ('restore_credit_installation', array['boolean', 'text', 'text']),
  ('fix_all_credits', array['boolean', 'text', 'text']);

-- The RPCs: for each, definer, and EXECUTE for service_role only.
select is_definer('public', r.name, r.args, format('public.%s is SECURITY DEFINER', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'anon', '{}', format('anon cannot execute public.%s', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'authenticated', '{}',
  format('authenticated cannot execute public.%s', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'service_role', array['EXECUTE'],
  format('service_role can execute public.%s', r.name)) from rpcs r;
select is_empty(
  $$ select p.oid::regprocedure from pg_proc p, pg_temp.rpcs r
     where p.oid = to_regprocedure(format('public.%s(%s)', r.name, array_to_string(r.args, ',')))
       and (p.proconfig is null or not 'search_path=""' = any (p.proconfig)) $$,
  'every RPC pins search_path to the empty string'
);
select is_empty(
  $$ select p.oid::regprocedure from pg_proc p, pg_temp.rpcs r
     where p.oid = to_regprocedure(format('public.%s(%s)', r.name, array_to_string(r.args, ',')))
       and exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a where a.grantee = 0) $$,
  'no RPC is executable by PUBLIC'
);

-- The internals: every private function of diagnosis and repair, no API role.
select is_empty(
  $$ select e.name, r.role_name from credit_private.expected_object e
       cross join unnest(array['anon', 'authenticated', 'service_role']) as r (role_name)
     where e.registered_by = '20261126002750_register_repair_expected_objects' and e.kind = 'function'
       and e.name like 'credit_private.%' and has_function_privilege(r.role_name, e.name::regprocedure, 'EXECUTE') $$,
  'no API role may execute a private function of diagnosis and repair'
);
select is_empty(
  $$ select e.name from credit_private.expected_object e join pg_proc p on p.oid = e.name::regprocedure
     where e.registered_by = '20261126002750_register_repair_expected_objects' and e.kind = 'function'
       and e.name like 'credit_private.%' and (p.prosecdef or not 'search_path=""' = any (coalesce(p.proconfig, '{}'))) $$,
  'every private function is SECURITY INVOKER with a pinned search_path'
);
select is_empty(
  $$ select e.name, r.role_name, p.privilege from credit_private.expected_object e
       cross join unnest(array['anon', 'authenticated', 'service_role']) as r (role_name)
       cross join unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) as p (privilege)
     where e.registered_by = '20261126002750_register_repair_expected_objects' and e.kind in ('table', 'view')
       and has_table_privilege(r.role_name, e.name::regclass, p.privilege) $$,
  'no API role holds any privilege on the private tables and views'
);
select is_empty(
  $$ select e.name from credit_private.expected_object e join pg_class c on c.oid = e.name::regclass
     where e.kind = 'view' and not 'security_invoker=on' = any (coalesce(c.reloptions, '{}')) $$,
  'every view is security_invoker'
);
select ok(
  not has_schema_privilege('anon', 'credit_private', 'USAGE') and not has_schema_privilege('authenticated', 'credit_private', 'USAGE')
  and not has_schema_privilege('service_role', 'credit_private', 'USAGE'),
  'no API role may use the private schema'
);

-- Behaviour, role by role.
create temp table someone as select tests.create_user() as id;
grant select on someone to authenticated;
select tests.clear_authentication();
select throws_ok($$ select public.diagnose_credits() $$, '42501', null, 'anon cannot diagnose');
select throws_ok($$ select public.fix_all_credits() $$, '42501', null, 'anon cannot repair, even as a dry run');
select throws_ok($$ select * from credit_private.orphaned_recharges $$, '42501', null, 'anon cannot read a monitoring view');

select tests.reset_identity();
select tests.authenticate_as((select id from someone));
select throws_ok($$ select public.diagnose_credits() $$, '42501', null, 'authenticated cannot diagnose');
select throws_ok($$ select public.diagnose_credits_incremental() $$, '42501', null, 'nor run the monitor''s check');
select throws_ok($$ select public.recompute_credit_balances() $$, '42501', null, 'nor repair');
select throws_ok($$ select * from credit_private.balance_mismatches $$, '42501', null, 'nor read a monitoring view');
select throws_ok($$ select * from credit_private.repair_log $$, '42501', null, 'nor the repair log');

select tests.authenticate_as_service_role();
select is((public.diagnose_credits() ->> 'scope'), 'full', 'service_role diagnoses');
select is((public.diagnose_credits_incremental('t101', advance => false) ->> 'scope'), 'incremental',
  'service_role runs the incremental check');
select is((public.fix_all_credits() ->> 'dry_run')::boolean, true, 'service_role runs a dry repair');
create temp table service_run as
select public.recompute_credit_balances(dry_run => false, actor => 'admin-endpoint', reason => 'test-101') as r;
select throws_ok($$ select * from credit_private.repair_log $$, '42501', null,
  'service_role cannot read the private log directly');
select throws_ok($$ select credit_private.run_repair('fix_all', null, true, 'x', 'y') $$, '42501', null,
  'nor call the private runner around the RPCs');
select tests.reset_identity();
select is(
  (select count(*) from credit_private.repair_log l where l.db_role = 'service_role' and l.actor = 'admin-endpoint'),
  (select (r ->> 'logged')::bigint from service_run),
  'a repair called by service_role is logged with that role and the actor it gave'
);

select * from finish();
rollback;
