-- Test: installs the identity helpers every other test file uses (runs first, by name).
-- Kept (committed) on purpose, like basejump's supabase_test_helpers, so that each later
-- file, run by pg_prove or `supabase test db`, can switch identity in one call.
create extension if not exists pgtap with schema extensions;

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

-- A new auth user; returns its id.
create or replace function tests.create_user(p_email text default null)
returns uuid
language sql
security invoker
set search_path = ''
as $$
  insert into auth.users (email)
  values (coalesce(p_email, 'user-' || gen_random_uuid() || '@test.local'))
  returning id
$$;

-- Act as a signed-in user: role authenticated and the JWT claims PostgREST would set.
create or replace function tests.authenticate_as(p_user_id uuid)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  perform set_config('request.jwt.claims',
    jsonb_build_object('sub', p_user_id, 'role', 'authenticated')::text, true);
  execute 'set local role authenticated';
end;
$$;

-- Act as the backend with the service-role key.
create or replace function tests.authenticate_as_service_role()
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  perform set_config('request.jwt.claims', '{"role":"service_role"}', true);
  execute 'set local role service_role';
end;
$$;

-- Act as an anonymous client with the anon key.
create or replace function tests.clear_authentication()
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  perform set_config('request.jwt.claims', '{"role":"anon"}', true);
  execute 'set local role anon';
end;
$$;

-- Back to the test owner (postgres) after acting as someone else.
create or replace function tests.reset_identity()
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  perform set_config('request.jwt.claims', '', true);
  execute 'reset role';
end;
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

begin;
select plan(1);
select has_function('tests', 'authenticate_as', array['uuid'], 'identity helpers are installed');
select * from finish();
rollback;
