-- Test: the private tables of diagnosis and repair (settings, repair log, expected objects, watermarks): shape, defaults, constraints, registration.
begin;
select plan(31);

select has_table('credit_private', t, format('credit_private.%s exists', t))
from unnest(array['settings', 'repair_log', 'expected_object', 'check_watermark']) as t;
select is_empty(
  $$ select e.name from credit_private.expected_object e
     where e.registered_by = '20261126002750_register_repair_expected_objects' and e.kind in ('table', 'view')
       and obj_description(e.name::regclass, 'pg_class') is null $$,
  'every table and view of diagnosis and repair says what it guarantees'
);
select is_empty(
  $$ select e.name from credit_private.expected_object e
     where e.registered_by = '20261126002750_register_repair_expected_objects' and e.kind = 'function'
       and obj_description(e.name::regprocedure, 'pg_proc') is null $$,
  'every function of diagnosis and repair says what it guarantees'
);
select is(
  (select count(*) from credit_private.expected_object e
   where e.registered_by = '20261126002750_register_repair_expected_objects' and e.kind = 'table'
     and e.definition ->> 'rls' = 'true'),
  4::bigint, 'the four tables of diagnosis and repair are registered with row level security required'
);

-- Settings: one typed row with documented defaults.
select is(
  (select row(s.failed_webhook_age, s.deferred_webhook_age, s.stuck_recharge_age, s.incremental_overlap,
     s.incremental_first_lookback, s.max_report_rows, s.retry_skip_error_codes)::text
   from credit_private.settings s),
  row(interval '15 minutes', interval '1 day', interval '1 hour', interval '5 minutes', interval '1 day', 100::bigint,
    array['CR003'])::text,
  'the settings row holds the documented defaults'
);
select is_empty(
  $$ select a.attname from pg_attribute a
     where a.attrelid = 'credit_private.settings'::regclass and a.attnum > 0 and not a.attisdropped
       and a.attname not in ('singleton', 'updated_at') and col_description(a.attrelid, a.attnum) is null $$,
  'every setting is documented'
);
select throws_ok($$ insert into credit_private.settings default values $$, '23505', null, 'there is only one settings row');
select throws_ok($$ insert into credit_private.settings (singleton) values (false) $$, '23514', null,
  'and no second row under another key');
select throws_ok($$ update credit_private.settings set stuck_recharge_age = interval '-1 hour' $$, '23514', null,
  'thresholds must be positive');
select throws_ok($$ update credit_private.settings set max_report_rows = -1 $$, '23514', null,
  'max_report_rows must not be negative');
delete from credit_private.settings;
select throws_ok($$ select credit_private.current_settings() $$, 'P0002', null,
  'without its row, reading the settings fails loudly');
select throws_ok($$ select public.diagnose_credits() $$, 'P0002', null, 'and so does the diagnosis, instead of reporting nothing');
insert into credit_private.settings default values;

-- Repair log.
select throws_ok(
  $$ insert into credit_private.repair_log (run_id, requested_action, action, target_type, target_id, dry_run, actor, reason, db_role)
     values (gen_random_uuid(), 'fix_all', 'recompute_balances', 'user_credit_balance', 'x', false, ' ', 'why', 'postgres') $$,
  '23514', null, 'an audit row needs an actor');
select throws_ok(
  $$ insert into credit_private.repair_log (run_id, requested_action, action, target_type, target_id, dry_run, actor, reason, db_role)
     values (gen_random_uuid(), 'fix_all', 'drop_everything', 'user_credit_balance', 'x', false, 'me', 'why', 'postgres') $$,
  '23514', null, 'and a known action');

-- The expected-object registry.
select is(
  (select jsonb_object_agg(k.kind, k.n) from (
     select e.kind, count(*) as n from credit_private.expected_object e
     where e.registered_by = '20261126002200_register_core_expected_objects' group by e.kind) k),
  '{"schema": 1, "table": 4, "policy": 3, "function": 16}'::jsonb,
  'the core''s objects are registered: the private schema, 4 tables, 3 policies, 16 functions (post_recharge_entry moved to 8000)'
);
-- Every function of the package's schemas is in the registry, so a later migration cannot
-- add one that the installation check silently ignores. Names as the registry spells them:
-- regprocedure text under an empty search_path.
create function pg_temp.unregistered_functions()
returns text[]
language sql
set search_path = ''
as $$
  select coalesce(array_agg(p.oid::pg_catalog.regprocedure::text order by 1), '{}')
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  where n.nspname in ('public', 'credit_private')
    and not exists (select 1 from pg_catalog.pg_depend d where d.objid = p.oid and d.deptype = 'e')
    and p.oid::pg_catalog.regprocedure::text not in (
      select e.name from credit_private.expected_object e where e.kind = 'function')
$$;
select is(pg_temp.unregistered_functions(), '{}'::text[],
  'every function in public and credit_private is registered as expected');
select is(
  (select jsonb_object_agg(k.kind, k.n) from (
     select e.kind, count(*) as n from credit_private.expected_object e
     where e.registered_by = '20261126002750_register_repair_expected_objects' group by e.kind) k),
  '{"table": 4, "view": 8, "function": 33}'::jsonb,
  'and the diagnosis and repair objects: 4 tables, 8 views, 33 functions'
);
select is_empty(
  $$ select e.kind, e.name, e.registered_by from credit_private.expected_object e
     where e.registered_by in ('20261126002200_register_core_expected_objects', '20261126002750_register_repair_expected_objects')
       and exists (select 1 from credit_private.expected_object_problems(e.kind, e.name)) $$,
  'every registered object of the core and of diagnosis and repair is exactly as expected'
);
select throws_ok($$ insert into credit_private.expected_object (kind, name, definition, registered_by) values ('trigger', 'x', '{}', 't') $$,
  '23514', null, 'kinds are known');
select throws_ok($$ select credit_private.expect_table('public.credit_recharge', '{"postgres": ["SELECT"]}', 'test-100') $$,
  '22023', null, 'privileges name API roles only');
select throws_ok($$ select credit_private.expect_table('public.credit_recharge', '{"anon": ["FLY"]}', 'test-100') $$,
  '22023', null, 'and known privileges');
select throws_ok($$ select credit_private.expect_table('public.credit_recharge', '{"anon": ["SELECT"]}', 'test-100') $$,
  '55000', null, 'a registration that does not match the catalog fails at once');
select throws_ok($$ select credit_private.expect_function('public.spend_credits(uuid,bigint,text,text)', false, '{service_role}', 'test-100') $$,
  '55000', null, 'a function registered with the wrong security mode fails at once');
select throws_ok($$ select credit_private.expect_function('public.spend_credits(uuid,bigint,text,text)', true, '{postgres}', 'test-100') $$,
  '22023', null, 'executable_by names API roles only');
select throws_ok($$ select credit_private.expect_policy('public.credit_recharge', 'No such policy', 'test-100') $$,
  '42704', null, 'a policy must exist to be registered');
select throws_ok($$ select credit_private.expect_schema('credit_private', '{nobody}', 'test-100') $$,
  '22023', null, 'schema usage names API roles only');
select throws_ok($$ select credit_private.expect_cron_job('job', ' ', 'select 1', 'test-100') $$,
  '22023', null, 'a cron job needs a schedule');
select credit_private.expect_cron_job('t100-job', '0 * * * *', 'select 1', 'test-100');
select credit_private.expect_cron_job('t100-job', '*/5 * * * *', 'select 2', 'test-100');
select is(
  (select e.definition from credit_private.expected_object e where e.kind = 'cron_job' and e.name = 't100-job'),
  '{"schedule": "*/5 * * * *", "command": "select 2", "active": true}'::jsonb,
  'registering again replaces the expectation (later migrations can change a job)'
);

select * from finish();
rollback;
