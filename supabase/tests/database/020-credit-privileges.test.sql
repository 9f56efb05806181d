-- Test: RLS and privilege matrix for anon, authenticated (own and others' rows) and service_role on every table and function.
-- The ledger is written only by the RPCs: no API role may insert, update, delete or truncate
-- it; users read their own rows; service_role reads everything; the private schema and its
-- functions are out of reach of every API role.
begin;
select plan(87);

select tests.create_user() as u1 \gset
select tests.create_user() as u2 \gset

-- Each user buys credits through the real RPC, so each has a row in all three tables.
select is(
  array(
    select public.handle_stripe_event(jsonb_build_object(
      'id', 'evt_t020_' || n, 'type', 'checkout.session.completed', 'created', 1764000000,
      'data', jsonb_build_object('object', jsonb_build_object(
        'id', 'cs_t020_' || n, 'object', 'checkout.session', 'client_reference_id', u,
        'payment_status', 'paid', 'payment_intent', 'pi_t020_' || n, 'amount_total', 1000, 'currency', 'usd',
        'metadata', jsonb_build_object('credits', '100'))))) ->> 'status'
    from (values (1, :'u1'::uuid), (2, :'u2'::uuid)) as v(n, u)
  ),
  array['processed', 'processed'], 'setup: both users buy 100 credits through handle_stripe_event'
);
select is(
  (select count(*)::int from public.credit_transaction where user_id in (:'u1', :'u2')),
  2, 'setup: both users were credited (one ledger entry each)'
);

-- ---------------------------------------------------------------------------------------
-- Table privileges: the whole matrix in one comparison (extra grants are listed on failure)
-- ---------------------------------------------------------------------------------------
select is(
  array(
    select format('%s:%s:%s', r, t, p)
    from unnest(array['anon', 'authenticated', 'service_role']) r,
         unnest(array['public.credit_recharge', 'public.credit_transaction', 'public.user_credit_balance',
                      'credit_private.stripe_webhook_event']) t,
         unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) p
    where has_table_privilege(r, t, p)
    order by 1
  ),
  array[
    'authenticated:public.credit_recharge:SELECT',
    'authenticated:public.credit_transaction:SELECT',
    'authenticated:public.user_credit_balance:SELECT',
    'service_role:public.credit_recharge:SELECT',
    'service_role:public.credit_transaction:SELECT',
    'service_role:public.user_credit_balance:SELECT'
  ],
  'API roles hold SELECT on the three public tables only (authenticated, service_role), nothing else'
);
select is(
  array(
    select format('%s:%s:%s', r, c.table_name, c.column_name)
    from unnest(array['anon', 'authenticated', 'service_role']) r,
         information_schema.columns c
    where c.table_schema = 'public'
      and c.table_name in ('credit_recharge', 'credit_transaction', 'user_credit_balance')
      and (has_column_privilege(r, format('public.%I', c.table_name), c.column_name, 'INSERT')
        or has_column_privilege(r, format('public.%I', c.table_name), c.column_name, 'UPDATE'))
    order by 1
  ),
  '{}'::text[], 'no API role may insert or update any column of the ledger tables'
);

select is(
  array(select c.relname::text from pg_class c
        where c.oid in ('public.credit_recharge'::regclass, 'public.credit_transaction'::regclass,
                        'public.user_credit_balance'::regclass)
          and not c.relrowsecurity order by 1),
  '{}'::text[], 'RLS is enabled on the three public tables'
);
select policies_are('public', 'credit_recharge', array['Users can read their own recharges'],
  'credit_recharge has exactly its read policy');
select policies_are('public', 'credit_transaction', array['Users can read their own credit transactions'],
  'credit_transaction has exactly its read policy');
select policies_are('public', 'user_credit_balance', array['Users can read their own credit balance'],
  'user_credit_balance has exactly its read policy');
select is(
  array(select format('%s/%s/%s/%s', tablename, cmd, roles, qual) from pg_policies
        where schemaname = 'public' and tablename in ('credit_recharge', 'credit_transaction', 'user_credit_balance')
        order by tablename),
  array[
    'credit_recharge/SELECT/{authenticated}/(( SELECT auth.uid() AS uid) = user_id)',
    'credit_transaction/SELECT/{authenticated}/(( SELECT auth.uid() AS uid) = user_id)',
    'user_credit_balance/SELECT/{authenticated}/(( SELECT auth.uid() AS uid) = user_id)'
  ],
  'each policy is SELECT, to authenticated, with (select auth.uid()) = user_id'
);

-- ---------------------------------------------------------------------------------------
-- anon: nothing at all
-- ---------------------------------------------------------------------------------------
select tests.clear_authentication();
select throws_ok(format('select * from public.%I', t), '42501', format('permission denied for table %s', t),
                 format('anon cannot select from %s', t))
from unnest(array['credit_recharge', 'credit_transaction', 'user_credit_balance']) t;
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits) values (%L, 1)$$, :'u1'),
  '42501', 'permission denied for table credit_recharge', 'anon cannot insert a recharge');
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'adjustment', 1000, 1000, 't020:anon')$$, :'u1'),
  '42501', 'permission denied for table credit_transaction', 'anon cannot insert a ledger entry');
select throws_ok(
  format($$insert into public.user_credit_balance (user_id, balance) values (%L, 1000)$$, :'u1'),
  '42501', 'permission denied for table user_credit_balance', 'anon cannot insert a balance');
select throws_ok(format('update public.%I set user_id = user_id', t), '42501', format('permission denied for table %s', t),
                 format('anon cannot update %s', t))
from unnest(array['credit_recharge', 'credit_transaction', 'user_credit_balance']) t;
select throws_ok(format('delete from public.%I', t), '42501', format('permission denied for table %s', t),
                 format('anon cannot delete from %s', t))
from unnest(array['credit_recharge', 'credit_transaction', 'user_credit_balance']) t;
select tests.reset_identity();

-- ---------------------------------------------------------------------------------------
-- authenticated: reads its own rows only, writes nothing (own rows or anyone else's)
-- ---------------------------------------------------------------------------------------
select tests.authenticate_as(:'u1');
select is(
  (select array_agg(distinct user_id::text) from public.credit_recharge), array[:'u1'],
  'a user sees only their own recharges');
select is(
  (select array_agg(distinct user_id::text) from public.credit_transaction), array[:'u1'],
  'a user sees only their own ledger entries');
select is(
  (select array_agg(distinct user_id::text) from public.user_credit_balance), array[:'u1'],
  'a user sees only their own balance');
select is(
  (select balance from public.user_credit_balance where user_id = :'u1'), 100::bigint,
  'a user reads their own balance');
select is(
  (select count(*)::int from public.credit_recharge where user_id = :'u2')
    + (select count(*)::int from public.credit_transaction where user_id = :'u2')
    + (select count(*)::int from public.user_credit_balance where user_id = :'u2'),
  0, 'another user''s rows are invisible, even when asked for by id');

select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits) values (%L, 1)$$, :'u1'),
  '42501', 'permission denied for table credit_recharge', 'a user cannot insert their own recharge');
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'adjustment', 1000, 1100, 't020:self-credit')$$, :'u1'),
  '42501', 'permission denied for table credit_transaction', 'a user cannot credit themselves');
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'adjustment', -100, 0, 't020:other-debit')$$, :'u2'),
  '42501', 'permission denied for table credit_transaction', 'a user cannot write another user''s ledger');
select throws_ok(
  format($$insert into public.user_credit_balance (user_id, balance) values (%L, 1000)$$, :'u2'),
  '42501', 'permission denied for table user_credit_balance', 'a user cannot create a balance row');
select throws_ok(
  format($$update public.user_credit_balance set balance = balance + 1000 where user_id = %L$$, :'u1'),
  '42501', 'permission denied for table user_credit_balance', 'a user cannot raise their own balance');
select throws_ok(
  format($$update public.user_credit_balance set balance = 0 where user_id = %L$$, :'u2'),
  '42501', 'permission denied for table user_credit_balance', 'a user cannot change another user''s balance');
select throws_ok(
  format($$update public.credit_recharge set status = 'completed', completed_at = now() where user_id = %L$$, :'u1'),
  '42501', 'permission denied for table credit_recharge', 'a user cannot update their own recharge');
select throws_ok(
  format($$update public.credit_transaction set amount = 100000 where user_id = %L$$, :'u1'),
  '42501', 'permission denied for table credit_transaction', 'a user cannot rewrite their own ledger');
select throws_ok(
  format($$delete from public.credit_transaction where user_id = %L and amount < 0$$, :'u1'),
  '42501', 'permission denied for table credit_transaction', 'a user cannot delete their own debits');
select throws_ok(
  format($$delete from public.credit_recharge where user_id = %L$$, :'u2'),
  '42501', 'permission denied for table credit_recharge', 'a user cannot delete another user''s recharge');
select throws_ok(
  format($$delete from public.user_credit_balance where user_id = %L$$, :'u1'),
  '42501', 'permission denied for table user_credit_balance', 'a user cannot delete their balance row');
select throws_ok(format('truncate public.%I', t), '42501', format('permission denied for table %s', t),
                 format('a user cannot truncate %s', t))
from unnest(array['credit_recharge', 'credit_transaction', 'user_credit_balance']) t;
select tests.reset_identity();

-- A signed-in session without a subject (no sub claim) sees nothing.
set local request.jwt.claims = '{"role":"authenticated"}';
set local role authenticated;
select is(
  (select count(*)::int from public.credit_recharge) + (select count(*)::int from public.credit_transaction)
    + (select count(*)::int from public.user_credit_balance),
  0, 'authenticated without a user id sees no rows at all');
select tests.reset_identity();

-- The other user sees their own rows (the policy is not just "first user wins").
select tests.authenticate_as(:'u2');
select is(
  (select array_agg(distinct user_id::text) from public.credit_transaction), array[:'u2'],
  'the second user sees exactly their own ledger entries');
select tests.reset_identity();

-- ---------------------------------------------------------------------------------------
-- service_role: reads everything (bypasses RLS), still writes nothing directly
-- ---------------------------------------------------------------------------------------
select tests.authenticate_as_service_role();
select is(
  (select count(distinct user_id)::int from public.credit_recharge where user_id in (:'u1', :'u2')),
  2, 'service_role reads every user''s recharges');
select is(
  (select count(distinct user_id)::int from public.credit_transaction where user_id in (:'u1', :'u2')),
  2, 'service_role reads every user''s ledger entries');
select is(
  (select count(distinct user_id)::int from public.user_credit_balance where user_id in (:'u1', :'u2')),
  2, 'service_role reads every user''s balance');
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits) values (%L, 1)$$, :'u1'),
  '42501', 'permission denied for table credit_recharge', 'service_role cannot insert a recharge directly');
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'adjustment', 1, 101, 't020:service')$$, :'u1'),
  '42501', 'permission denied for table credit_transaction', 'service_role cannot write the ledger directly');
select throws_ok(
  format($$insert into public.user_credit_balance (user_id) values (%L)$$, :'u1'),
  '42501', 'permission denied for table user_credit_balance', 'service_role cannot insert a balance directly');
select throws_ok(format('update public.%I set user_id = user_id', t), '42501', format('permission denied for table %s', t),
                 format('service_role cannot update %s directly', t))
from unnest(array['credit_recharge', 'credit_transaction', 'user_credit_balance']) t;
select throws_ok(format('delete from public.%I', t), '42501', format('permission denied for table %s', t),
                 format('service_role cannot delete from %s', t))
from unnest(array['credit_recharge', 'credit_transaction', 'user_credit_balance']) t;
select tests.reset_identity();

select is(
  (select array[count(*) filter (where user_id = :'u1'), count(*) filter (where user_id = :'u2')]::int[]
   from public.credit_transaction),
  array[1, 1], 'after all those attempts, the ledger is unchanged');
select is(
  (select array_agg(balance order by user_id = :'u2') from public.user_credit_balance where user_id in (:'u1', :'u2')),
  array[100, 100]::bigint[], 'and so are both balances');

-- ---------------------------------------------------------------------------------------
-- The private schema: no API role may use it
-- ---------------------------------------------------------------------------------------
select is(
  array(select format('%s:%s', r, p)
        from unnest(array['public', 'anon', 'authenticated', 'service_role', 'authenticator']) r,
             unnest(array['USAGE', 'CREATE']) p
        where case when r = 'public' then
                exists (select 1 from pg_namespace n, aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
                        where n.nspname = 'credit_private' and a.grantee = 0 and a.privilege_type = p)
              else has_schema_privilege(r, 'credit_private', p) end
        order by 1),
  '{}'::text[], 'no API role (nor PUBLIC) has USAGE or CREATE on credit_private');
select tests.clear_authentication();
select throws_ok('select * from credit_private.stripe_webhook_event', '42501',
  'permission denied for schema credit_private', 'anon cannot read the webhook inbox');
select tests.reset_identity();
select tests.authenticate_as(:'u1');
select throws_ok('select * from credit_private.stripe_webhook_event', '42501',
  'permission denied for schema credit_private', 'authenticated cannot read the webhook inbox');
select throws_ok($$insert into credit_private.stripe_webhook_event (event_id, type, payload) values ('evt_x', 'x', '{}')$$,
  '42501', 'permission denied for schema credit_private', 'authenticated cannot write the webhook inbox');
select tests.reset_identity();
select tests.authenticate_as_service_role();
select throws_ok('select * from credit_private.stripe_webhook_event', '42501',
  'permission denied for schema credit_private', 'service_role cannot read the webhook inbox directly');
select throws_ok($$update credit_private.stripe_webhook_event set status = 'processed'$$, '42501',
  'permission denied for schema credit_private', 'service_role cannot change the webhook inbox directly');
select tests.reset_identity();

-- ---------------------------------------------------------------------------------------
-- Functions: the two public RPCs are for service_role only
-- ---------------------------------------------------------------------------------------
select function_privs_are('public', 'handle_stripe_event', array['jsonb'], r, privs,
  format('%s %s execute public.handle_stripe_event', r, case when privs = '{}' then 'cannot' else 'can' end))
from (values ('anon', '{}'::text[]), ('authenticated', '{}'), ('service_role', '{EXECUTE}')) as v(r, privs);
select function_privs_are('public', 'spend_credits', array['uuid', 'bigint', 'text', 'text'], r, privs,
  format('%s %s execute public.spend_credits', r, case when privs = '{}' then 'cannot' else 'can' end))
from (values ('anon', '{}'::text[]), ('authenticated', '{}'), ('service_role', '{EXECUTE}')) as v(r, privs);
select is(
  array(select p.oid::regprocedure::text
        from pg_proc p, aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
        where p.oid in ('public.handle_stripe_event(jsonb)'::regprocedure,
                        'public.spend_credits(uuid, bigint, text, text)'::regprocedure)
          and a.grantee = 0 and a.privilege_type = 'EXECUTE'),
  '{}'::text[], 'PUBLIC cannot execute the public RPCs');
select is(
  array(select p.oid::regprocedure::text from pg_proc p
        where p.oid in ('public.handle_stripe_event(jsonb)'::regprocedure,
                        'public.spend_credits(uuid, bigint, text, text)'::regprocedure)
          and not p.prosecdef),
  '{}'::text[], 'the public RPCs are security definer (they write tables no API role can)');

select tests.clear_authentication();
select throws_ok($$select public.handle_stripe_event('{"id":"evt_t020_anon","type":"x","data":{"object":{}}}')$$,
  '42501', 'permission denied for function handle_stripe_event', 'anon cannot call handle_stripe_event');
select throws_ok(format($$select public.spend_credits(%L, 1, 't020-anon')$$, :'u1'),
  '42501', 'permission denied for function spend_credits', 'anon cannot call spend_credits');
select tests.reset_identity();
select tests.authenticate_as(:'u1');
select throws_ok($$select public.handle_stripe_event('{"id":"evt_t020_auth","type":"x","data":{"object":{}}}')$$,
  '42501', 'permission denied for function handle_stripe_event', 'authenticated cannot call handle_stripe_event');
select throws_ok(format($$select public.spend_credits(%L, 1, 't020-auth')$$, :'u2'),
  '42501', 'permission denied for function spend_credits', 'authenticated cannot spend another user''s credits');
select throws_ok(format($$select public.spend_credits(%L, 1, 't020-auth-own')$$, :'u1'),
  '42501', 'permission denied for function spend_credits', 'authenticated cannot call spend_credits even for themselves');
select tests.reset_identity();
select tests.authenticate_as_service_role();
select is(
  public.handle_stripe_event('{"id":"evt_t020_service","type":"customer.created","data":{"object":{"id":"cus_1"}}}') ->> 'status',
  'ignored', 'service_role can call handle_stripe_event');
select is(
  (public.spend_credits(:'u1', 1, 't020-service') ->> 'balance_after')::bigint, 99::bigint,
  'service_role can call spend_credits');
select tests.reset_identity();

-- ---------------------------------------------------------------------------------------
-- Functions: everything in credit_private is out of reach of every API role
-- ---------------------------------------------------------------------------------------
-- Calls every function of a schema, with null arguments, as a role; returns those calls
-- that were NOT refused before running (each call's effect, if any, is rolled back).
create function pg_temp.unrefused_calls(p_role text, p_schema text)
returns text[]
language plpgsql
as $$
declare
  v_fn record;
  v_out text[] := '{}';
begin
  for v_fn in
    select format('%I.%I(%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) as sig, p.prokind,
           format('%I.%I(%s)', n.nspname, p.proname,
                  coalesce((select string_agg('null::' || format_type(t, null), ', ' order by o)
                            from unnest(p.proargtypes) with ordinality as a(t, o)), '')) as call
    from pg_proc p
    join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = p_schema
      and p.prokind in ('f', 'p')
      and p.prorettype not in ('trigger'::regtype, 'event_trigger'::regtype)
      and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
    order by 1
  loop
    begin
      execute format('set local role %I', p_role);
      execute case when v_fn.prokind = 'p' then 'call ' else 'select ' end || v_fn.call;
      raise exception 'ran' using errcode = 'XX000';
    exception
      -- Refused at the door: no usage on the schema, or no EXECUTE on the function itself.
      when insufficient_privilege then
        if sqlerrm !~ '^permission denied for (schema|function) ' then
          v_out := v_out || format('%s (ran, then: %s)', v_fn.sig, sqlerrm);
        end if;
      when others then v_out := v_out || format('%s (%s)', v_fn.sig, sqlstate);
    end;
  end loop;
  return v_out;
end;
$$;

select ok(
  (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'credit_private') >= 12,
  'credit_private holds the core functions (so the checks below are not vacuous)');
select is(
  array(select format('%s:%s', r, p.oid::regprocedure)
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace,
             unnest(array['anon', 'authenticated', 'service_role', 'authenticator']) r
        where n.nspname = 'credit_private' and has_function_privilege(r, p.oid, 'EXECUTE')
        order by 1),
  '{}'::text[], 'no API role holds EXECUTE on any credit_private function');
select is(
  array(select p.oid::regprocedure::text
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace,
             aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
        where n.nspname = 'credit_private' and a.grantee = 0 and a.privilege_type = 'EXECUTE'
        order by 1),
  '{}'::text[], 'PUBLIC holds EXECUTE on no credit_private function');
select is(pg_temp.unrefused_calls(r, 'credit_private'), '{}'::text[],
  format('%s: every call of a credit_private function is refused with 42501', r))
from unnest(array['anon', 'authenticated', 'service_role']) r;
select is(current_user::text, 'postgres', 'identity is back to postgres after the call sweep');

select tests.authenticate_as(:'u1');
select throws_ok(
  format($$select * from credit_private.post_ledger_entry(%L, 'adjustment', 1000000, 't020-direct')$$, :'u1'),
  '42501', 'permission denied for schema credit_private', 'a user cannot post to the ledger through the private writer');
select tests.reset_identity();
select tests.authenticate_as_service_role();
select throws_ok(
  $$select credit_private.process_stripe_event('evt_t020_1')$$,
  '42501', 'permission denied for schema credit_private', 'service_role cannot call private functions directly');
select tests.reset_identity();

select is(
  (select balance from public.user_credit_balance where user_id = :'u1'), 99::bigint,
  'the only change to the user''s balance is the one service_role spend');

select * from finish();
rollback;
