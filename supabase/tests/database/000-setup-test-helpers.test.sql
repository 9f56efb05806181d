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

-- A Stripe event wrapping an object, in Stripe's shape.
create or replace function tests.stripe_event(p_id text, p_type text, p_object jsonb)
returns jsonb
language sql
as $$
  select jsonb_build_object(
    'id', p_id, 'object', 'event', 'api_version', '2024-06-20', 'created', 1764000000,
    'livemode', false, 'pending_webhooks', 1, 'type', p_type,
    'data', jsonb_build_object('object', p_object))
$$;

-- Delivers an event the way the webhook does: handle_stripe_event as service_role.
create or replace function tests.deliver_stripe_event(p_event jsonb)
returns jsonb
language plpgsql
as $$
declare
  v_result jsonb;
begin
  perform tests.authenticate_as_service_role();
  v_result := public.handle_stripe_event(p_event);
  perform tests.reset_identity();
  return v_result;
end;
$$;

-- A paid Checkout Session selling p_credits (text, so a test can send a malformed value) to
-- p_user_id; its PaymentIntent is pi_<session> unless named.
create or replace function tests.paid_session(
  p_session text, p_user_id uuid, p_credits text, p_amount_total bigint default 1000, p_payment_intent text default null)
returns jsonb
language sql
as $$
  select jsonb_build_object(
    'id', p_session, 'object', 'checkout.session', 'client_reference_id', p_user_id,
    'payment_status', 'paid', 'payment_intent', coalesce(p_payment_intent, 'pi_' || p_session),
    'amount_total', p_amount_total, 'currency', 'usd', 'metadata', jsonb_build_object('credits', p_credits))
$$;

-- Shared by the diagnosis and repair tests: a paid checkout through the webhook's RPC (returns
-- the recharge id), a fingerprint of everything a repair could change, and the ids a report names.
create or replace function tests.pay(p_user_id uuid, p_session text, p_credits bigint)
returns uuid
language sql
as $$
  select public.handle_stripe_event(tests.stripe_event('evt_' || p_session, 'checkout.session.completed',
    tests.paid_session(p_session, p_user_id, p_credits::text, p_amount_total => p_credits)));
  select r.id from public.credit_recharge r where r.stripe_checkout_session_id = p_session;
$$;

-- Everything a repair could change: the three tables, the inbox, policies, ACLs, function
-- settings and cron jobs. Equal before and after means nothing changed.
create or replace function tests.fingerprint()
returns text
language sql
as $$
  select md5(concat_ws('|',
    (select string_agg(r::text, ',' order by r.id) from public.credit_recharge r),
    (select string_agg(t::text, ',' order by t.id) from public.credit_transaction t),
    (select string_agg(b::text, ',' order by b.user_id) from public.user_credit_balance b),
    (select string_agg(e::text, ',' order by e.event_id) from credit_private.stripe_webhook_event e),
    (select string_agg(concat_ws(' ', p.polrelid::regclass, p.polname, p.polcmd, p.polroles,
        pg_get_expr(p.polqual, p.polrelid)), ',' order by p.polrelid::regclass::text, p.polname)
     from pg_policy p),
    (select string_agg(concat_ws(' ', c.oid::regclass, c.relacl, c.relrowsecurity, c.reloptions), ','
        order by c.oid::regclass::text)
     from pg_class c join pg_namespace n on n.oid = c.relnamespace
     where n.nspname in ('public', 'credit_private')),
    (select string_agg(concat_ws(' ', p.oid::regprocedure, p.proacl, p.prosecdef, p.proconfig), ','
        order by p.oid::regprocedure::text)
     from pg_proc p join pg_namespace n on n.oid = p.pronamespace
     where n.nspname in ('public', 'credit_private')),
    (select string_agg(concat_ws(' ', j.jobname, j.schedule, j.command, j.active), ',' order by j.jobid)
     from cron.job j)
  ))
$$;

-- The ids a report names in a category, by the finding's key.
create or replace function tests.named(p_report jsonb, p_category text, p_key text)
returns table (id text)
language sql
as $$
  select f ->> p_key from jsonb_array_elements(p_report #> array['categories', p_category, 'findings']) f
$$;


grant execute on all functions in schema tests to anon, authenticated, service_role;

begin;
select plan(1);
select has_function('tests', 'authenticate_as', array['uuid'], 'identity helpers are installed');
select * from finish();
rollback;
