-- Test: the Supabase security advisor's rules, as catalog queries over every schema of the package (present and future).
-- The package's schemas are all schemas except PostgreSQL's, the platform's and the test
-- helpers'; objects that belong to an extension are the extension's business and skipped.
-- Each check returns its offenders, so a failure names them.
begin;
select plan(10);

create temporary view package_schema as
select n.oid, n.nspname::text as name
from pg_namespace n
where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast',
                        -- created by the Supabase platform (or its local stand-in), not by this package
                        'auth', 'extensions', 'cron', 'storage', 'realtime', '_realtime', 'graphql', 'graphql_public',
                        'vault', 'net', 'pgsodium', 'pgsodium_masks', 'supabase_functions', 'supabase_migrations',
                        'pgbouncer', '_analytics', 'pgmq', 'pgmq_public',
                        -- the pgTAP identity helpers
                        'tests')
  and n.nspname !~ '^pg_(temp|toast_temp)_';

-- Schemas the Data API exposes.
create temporary view exposed_schema as
select n.oid, n.nspname::text as name from pg_namespace n where n.nspname in ('public', 'graphql_public');

create temporary view package_relation as
select c.oid, c.relkind, format('%I.%I', n.nspname, c.relname) as name, c.relrowsecurity, c.reloptions, n.nspname::text as schema
from pg_class c join pg_namespace n on n.oid = c.relnamespace
where c.relnamespace in (select oid from package_schema)
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_class'::regclass and d.objid = c.oid and d.deptype = 'e');

create temporary view package_function as
select p.oid, format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as name,
       p.prosecdef, p.proconfig, p.proacl, p.proowner
from pg_proc p join pg_namespace n on n.oid = p.pronamespace
where p.pronamespace in (select oid from package_schema)
  and p.prokind in ('f', 'p', 'w')
  and not exists (select 1 from pg_depend d
                  where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');

-- SECURITY DEFINER functions that anon or authenticated may deliberately execute. None yet:
-- adding one here must come with its own tests of what it lets a client do.
create temporary table definer_allowed_for_clients (name text primary key);

-- The checks must not be vacuous.
select ok(
  (select array_agg(name) from package_schema) @> array['public', 'credit_private']
    and (select count(*) from package_function where name like 'credit_private.%') > 0
    and (select count(*) from package_relation where relkind = 'r') >= 4,
  'the package''s schemas (public, credit_private, ...) and their objects are found');

-- rls_disabled_in_public (and the same for the private schema): RLS on every table.
select is(
  array(select name from package_relation where relkind in ('r', 'p') and not relrowsecurity order by 1),
  '{}'::text[], 'RLS is enabled on every table of the package');

-- policy_exists_rls_disabled: a policy on a table without RLS protects nothing.
select is(
  array(select distinct format('%I.%I', p.schemaname, p.tablename)
        from pg_policies p join package_relation r on r.name = format('%I.%I', p.schemaname, p.tablename)
        where not r.relrowsecurity order by 1),
  '{}'::text[], 'no table has policies with RLS disabled');

-- function_search_path_mutable: every function pins search_path to ''.
select is(
  array(select name from package_function
        where not coalesce('search_path=""' = any(proconfig), false) order by 1),
  '{}'::text[], 'every function of the package has search_path = '''' pinned');

-- No SECURITY DEFINER function executable by a client role (unless deliberately allowed).
select is(
  array(select format('%s by %s', f.name, r)
        from package_function f, unnest(array['anon', 'authenticated']) r
        where f.prosecdef and has_function_privilege(r, f.oid, 'EXECUTE')
          and f.name not in (select name from definer_allowed_for_clients)
        order by 1),
  '{}'::text[], 'no SECURITY DEFINER function is executable by anon or authenticated');

-- No function executable by PUBLIC (a null ACL means PostgreSQL's default: PUBLIC may execute).
select is(
  array(select f.name
        from package_function f, aclexplode(coalesce(f.proacl, acldefault('f', f.proowner))) a
        where a.grantee = 0 and a.privilege_type = 'EXECUTE'
        order by 1),
  '{}'::text[], 'no function of the package is executable by PUBLIC');

-- security_definer_view: every view in an exposed schema runs with the caller's rights.
select is(
  array(select name from package_relation
        where relkind = 'v' and schema in (select name from exposed_schema)
          and not exists (select 1 from unnest(coalesce(reloptions, '{}')) o
                          where lower(o) in ('security_invoker=on', 'security_invoker=true', 'security_invoker=1',
                                             'security_invoker=yes'))
        order by 1),
  '{}'::text[], 'every view in an exposed schema has security_invoker = on');

-- materialized_view_in_api: a materialized view ignores RLS, so none in an exposed schema.
select is(
  array(select name from package_relation where relkind = 'm' and schema in (select name from exposed_schema) order by 1),
  '{}'::text[], 'no materialized view in an exposed schema');

-- auth_users_exposed: no view or materialized view in an exposed schema reads auth.users.
select is(
  array(select distinct r.name
        from package_relation r
        join pg_rewrite w on w.ev_class = r.oid
        join pg_depend d on d.classid = 'pg_rewrite'::regclass and d.objid = w.oid
        where r.relkind in ('v', 'm') and r.schema in (select name from exposed_schema)
          and d.refobjid = 'auth.users'::regclass
        order by 1),
  '{}'::text[], 'no view in an exposed schema exposes auth.users');

-- The private schema stays private: no API role may use a schema that is not exposed.
select is(
  array(select format('%s:%s', s.name, r)
        from package_schema s, unnest(array['anon', 'authenticated']) r
        where s.name not in (select name from exposed_schema) and has_schema_privilege(r, s.oid, 'USAGE')
        order by 1),
  '{}'::text[], 'anon and authenticated cannot use any non-exposed schema of the package');

select * from finish();
rollback;
