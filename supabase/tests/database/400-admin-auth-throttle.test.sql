-- Test: the admin endpoint's failed-key counter: privileges, counting, blocking (whatever the key), clearing on success, window and block expiry, bounded cleanup, the overflow row, bad arguments.
begin;
select plan(42);

-- Privileges: the RPC is SECURITY DEFINER, pinned, for service_role only; the table is closed.
select is_definer('public', 'record_admin_auth_attempt', array['text', 'boolean'],
  'record_admin_auth_attempt is SECURITY DEFINER');
select function_privs_are('public', 'record_admin_auth_attempt', array['text', 'boolean'], 'anon', '{}',
  'anon cannot execute record_admin_auth_attempt');
select function_privs_are('public', 'record_admin_auth_attempt', array['text', 'boolean'], 'authenticated', '{}',
  'authenticated cannot execute record_admin_auth_attempt');
select function_privs_are('public', 'record_admin_auth_attempt', array['text', 'boolean'], 'service_role',
  array['EXECUTE'], 'service_role can execute record_admin_auth_attempt');
select ok((select 'search_path=""' = any (p.proconfig) from pg_proc p
  where p.oid = 'public.record_admin_auth_attempt(text,boolean)'::regprocedure),
  'record_admin_auth_attempt pins search_path');
select ok((select relrowsecurity from pg_class where oid = 'credit_private.admin_auth_failure'::regclass),
  'RLS is enabled on admin_auth_failure');
select is(credit_private.relation_privileges('credit_private.admin_auth_failure'),
  '{"anon": [], "authenticated": [], "service_role": []}'::jsonb, 'no API role holds a privilege on admin_auth_failure');
select is_empty($$ select * from credit_private.expected_object_problems('table', 'credit_private.admin_auth_failure') $$,
  'admin_auth_failure is registered with the installation check and intact');
select is_empty($$ select * from credit_private.expected_object_problems('function', 'public.record_admin_auth_attempt(text,boolean)') $$,
  'record_admin_auth_attempt is registered with the installation check and intact');
select isnt(obj_description('credit_private.admin_auth_failure'::regclass, 'pg_class'), null,
  'admin_auth_failure says what it guarantees');
select isnt(obj_description('public.record_admin_auth_attempt(text,boolean)'::regprocedure, 'pg_proc'), null,
  'record_admin_auth_attempt says what it guarantees');

-- The settings, documented, with their defaults.
select is(
  (select row(s.admin_auth_max_failures, s.admin_auth_failure_window, s.admin_auth_block_duration,
     s.admin_auth_max_clients, s.admin_audit_retention)::text from credit_private.settings s),
  row(5, interval '15 minutes', interval '15 minutes', 10000, interval '365 days')::text,
  'the admin settings hold their documented defaults');
select is_empty(
  $$ select a.attname from pg_attribute a
     where a.attrelid = 'credit_private.settings'::regclass and a.attname like 'admin\_%'
       and col_description(a.attrelid, a.attnum) is null $$,
  'every admin setting is documented');
select throws_ok($$ update credit_private.settings set admin_auth_max_failures = 0 $$, '23514', null,
  'at least one failure is allowed before a block');

-- Who may call it.
select tests.clear_authentication();
select throws_ok($$ select public.record_admin_auth_attempt('198.51.100.1', false) $$, '42501', null,
  'anon cannot count attempts');
select tests.reset_identity();
select tests.authenticate_as(tests.create_user());
select throws_ok($$ select public.record_admin_auth_attempt('198.51.100.1', true) $$, '42501', null,
  'authenticated cannot count attempts');
select tests.reset_identity();

-- Counting, as the endpoint does (service_role). now() is fixed inside this transaction.
select tests.authenticate_as_service_role();
select is(
  array(select public.record_admin_auth_attempt('198.51.100.7', false) - 'retry_after_seconds' from generate_series(1, 4)),
  array[
    '{"allowed": false, "blocked": false, "failures": 1}'::jsonb, '{"allowed": false, "blocked": false, "failures": 2}',
    '{"allowed": false, "blocked": false, "failures": 3}', '{"allowed": false, "blocked": false, "failures": 4}'],
  'failures 1 to 4 are counted, not blocked');
select is(public.record_admin_auth_attempt('198.51.100.7', false),
  '{"allowed": false, "blocked": true, "failures": 5, "retry_after_seconds": 900}'::jsonb,
  'the fifth failure blocks at once, for the block duration');
select is(public.record_admin_auth_attempt('198.51.100.7', true),
  '{"allowed": false, "blocked": true, "failures": 5, "retry_after_seconds": 900}'::jsonb,
  'a blocked client is refused even with the right key');
select is(public.record_admin_auth_attempt('198.51.100.7', false) ->> 'failures', '5',
  'refusals while blocked are not counted');
select is(public.record_admin_auth_attempt('198.51.100.8', true),
  '{"allowed": true, "blocked": false, "failures": 0, "retry_after_seconds": null}'::jsonb,
  'another client is not affected');
select throws_ok($$ select * from credit_private.admin_auth_failure $$, '42501', null,
  'service_role cannot read the counters directly');
select tests.reset_identity();

select is(
  (select row(f.failures, f.blocked_until, f.expires_at)::text from credit_private.admin_auth_failure f
   where f.client = '198.51.100.7'),
  row(5, now() + interval '15 minutes', now() + interval '15 minutes')::text,
  'the blocked row: five failures, blocked and expiring 15 minutes from the block');
select is((select count(*) from credit_private.admin_auth_failure where client = '198.51.100.8'), 0::bigint,
  'a client that never failed leaves no row');

-- A success clears the client's failures.
select tests.authenticate_as_service_role();
select public.record_admin_auth_attempt('198.51.100.9', false);
select public.record_admin_auth_attempt('198.51.100.9', false);
select is(public.record_admin_auth_attempt('198.51.100.9', true) ->> 'allowed', 'true', 'a right key is allowed');
select tests.reset_identity();
select is((select count(*) from credit_private.admin_auth_failure where client = '198.51.100.9'), 0::bigint,
  'and forgets the client''s failures');

-- The window: failures older than it start a new count.
select tests.authenticate_as_service_role();
select public.record_admin_auth_attempt('198.51.100.10', false) from generate_series(1, 4);
select tests.reset_identity();
update credit_private.admin_auth_failure set window_started_at = now() - interval '16 minutes'
where client = '198.51.100.10';
select tests.authenticate_as_service_role();
select is(public.record_admin_auth_attempt('198.51.100.10', false) ->> 'failures', '1',
  'a failure after the window starts a new count');

-- The block ends: the right key works again.
select tests.reset_identity();
update credit_private.admin_auth_failure
set blocked_until = now() - interval '1 second', window_started_at = now() - interval '20 minutes'
where client = '198.51.100.7';
select tests.authenticate_as_service_role();
select is(public.record_admin_auth_attempt('198.51.100.7', true) ->> 'allowed', 'true',
  'after the block, the right key is allowed');
select tests.reset_identity();
select is((select count(*) from credit_private.admin_auth_failure where client = '198.51.100.7'), 0::bigint,
  'and the row is gone');

-- Bounded cleanup: expired rows are deleted as calls come, the others kept.
insert into credit_private.admin_auth_failure (client, failures, window_started_at, last_failure_at, expires_at)
select 'expired-' || i, 1, now() - interval '1 hour', now() - interval '1 hour', now() - interval '45 minutes'
from generate_series(1, 150) i;
select tests.authenticate_as_service_role();
select public.record_admin_auth_attempt('198.51.100.11', true);
select tests.reset_identity();
select is((select count(*) from credit_private.admin_auth_failure where client like 'expired-%'), 50::bigint,
  'one call deletes 100 expired rows, oldest first');
select tests.authenticate_as_service_role();
select public.record_admin_auth_attempt('198.51.100.11', true);
select tests.reset_identity();
select is((select count(*) from credit_private.admin_auth_failure where client like 'expired-%'), 0::bigint,
  'the next call the rest');
select is((select count(*) from credit_private.admin_auth_failure where client = '198.51.100.10'), 1::bigint,
  'a row still in its window is kept');

-- Bounded size: once max_clients rows exist, new clients share the overflow row.
update credit_private.settings set admin_auth_max_clients = (select count(*) from credit_private.admin_auth_failure)::integer;
select tests.authenticate_as_service_role();
select is(public.record_admin_auth_attempt('203.0.113.' || i, false) ->> 'failures', i::text,
  format('new client %s is counted in the overflow row', i))
from generate_series(1, 2) i;
select tests.reset_identity();
select is((select failures from credit_private.admin_auth_failure where client = '*overflow*'), 2::bigint,
  'the overflow row holds their failures');
select is((select count(*) from credit_private.admin_auth_failure where client like '203.0.113.%'), 0::bigint,
  'and no row of their own is added');
select tests.authenticate_as_service_role();
select public.record_admin_auth_attempt('203.0.113.' || i, false) from generate_series(3, 5) i;
select is(public.record_admin_auth_attempt('203.0.113.99', true) ->> 'blocked', 'true',
  'a new client is refused while the overflow row is blocked, even with the right key');
select is(public.record_admin_auth_attempt('198.51.100.10', true) ->> 'allowed', 'true',
  'a client with its own row is still judged by it');

-- Bad arguments.
select throws_ok($$ select public.record_admin_auth_attempt(null, false) $$, '22023', null, 'a client is required');
select throws_ok($$ select public.record_admin_auth_attempt('', false) $$, '22023', null, 'not blank');
select throws_ok($$ select public.record_admin_auth_attempt(repeat('x', 129), false) $$, '22023', null,
  'at most 128 characters');
select throws_ok($$ select public.record_admin_auth_attempt('198.51.100.1', null) $$, '22023', null,
  'succeeded is required');
select tests.reset_identity();

select * from finish();
rollback;
