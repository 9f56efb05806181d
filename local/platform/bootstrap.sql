-- Local stand-in for what the Supabase platform image creates before any migration runs.
-- Run once per fresh cluster, as the superuser supabase_admin, in database postgres.
-- It mirrors hosted Supabase closely enough that RLS, revokes and default privileges are
-- really exercised: migrations later run as the non-superuser role postgres.
\set ON_ERROR_STOP on

-- Roles as on the platform. postgres is NOT a superuser there either.
create role postgres login createrole createdb replication bypassrls password 'postgres';
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit password 'postgres';
grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role to postgres with admin option;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

alter database postgres owner to postgres;
-- As on the platform: extensions live in their own schema, on every session's path.
alter database postgres set search_path to "$user", public, extensions;
alter schema public owner to postgres;
grant usage on schema public to anon, authenticated, service_role;

-- The platform's default privileges: everything postgres creates in public is granted to
-- the API roles, so only RLS and explicit revokes protect it.
alter default privileges for role postgres in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on sequences to anon, authenticated, service_role;
alter default privileges for role postgres in schema public grant all on functions to anon, authenticated, service_role;

create schema extensions;
grant usage on schema extensions to postgres, anon, authenticated, service_role;
create extension pgcrypto with schema extensions;
create extension pgtap with schema extensions;

-- pg_cron as the platform enables it: the cron schema is usable by postgres.
create extension pg_cron;
grant usage on schema cron to postgres with grant option;
grant all privileges on all tables in schema cron to postgres with grant option;
grant all privileges on all sequences in schema cron to postgres with grant option;
grant execute on all functions in schema cron to postgres;

-- A minimal auth schema: users and the JWT helpers, reading request.jwt.claims as upstream.
create schema auth;
grant usage on schema auth to postgres, anon, authenticated, service_role;

create table auth.users (
  id uuid primary key default gen_random_uuid(),
  email text unique,
  role text default 'authenticated',
  raw_app_meta_data jsonb default '{}'::jsonb,
  raw_user_meta_data jsonb default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
grant all on auth.users to postgres, service_role;

create function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

create function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

grant execute on function auth.jwt(), auth.uid(), auth.role() to postgres, anon, authenticated, service_role;

-- Where the Supabase CLI records applied migrations.
create schema supabase_migrations authorization postgres;
create table supabase_migrations.schema_migrations (
  version text primary key,
  name text,
  statements text[]
);
alter table supabase_migrations.schema_migrations owner to postgres;
