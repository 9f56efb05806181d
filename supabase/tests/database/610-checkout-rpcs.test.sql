-- Test: the checkout RPCs: get_checkout_package reads as the caller (auth.uid() and RLS), record_pending_recharge records one pending recharge per session, idempotently, for service_role only.
begin;
select plan(27);

select tests.create_user() as u1 \gset
select tests.create_user() as u2 \gset
insert into public.credit_packages (id, name, stripe_price_id, credits, amount_cents, active) values
  ('00000000-0000-4000-8000-00000000a610', 'Starter', 'price_pgtap_610_on', 100, 199, true),
  ('00000000-0000-4000-8000-00000000a611', 'Retired', 'price_pgtap_610_off', 50, 99, false);

-- get_checkout_package: security invoker, for signed-in users only.
select isnt_definer('public', 'get_checkout_package', array['uuid'], 'get_checkout_package is SECURITY INVOKER');
select function_privs_are('public', 'get_checkout_package', array['uuid'], 'anon', '{}', 'anon cannot call it');
select function_privs_are('public', 'get_checkout_package', array['uuid'], 'authenticated', array['EXECUTE'],
  'authenticated can call it');
select function_privs_are('public', 'get_checkout_package', array['uuid'], 'service_role', '{}',
  'service_role cannot call it (it has no user)');

select tests.authenticate_as(:'u1');
select is(
  public.get_checkout_package('00000000-0000-4000-8000-00000000a610') -> 'user_id',
  to_jsonb(:'u1'::uuid),
  'it returns the caller''s own user id'
);
select is(
  public.get_checkout_package('00000000-0000-4000-8000-00000000a610') #>> '{package,stripe_price_id}',
  'price_pgtap_610_on',
  'and the package'
);
select is(
  (public.get_checkout_package('00000000-0000-4000-8000-00000000a611') #>> '{package,active}')::boolean,
  false,
  'an inactive package is returned with active = false'
);
select is(
  public.get_checkout_package(gen_random_uuid()) -> 'package',
  'null'::jsonb,
  'an unknown package is null'
);
select tests.reset_identity();

-- A JWT with role authenticated but no sub is no user.
select set_config('request.jwt.claims', '{"role":"authenticated"}', true);
set local role authenticated;
select throws_ok($$select public.get_checkout_package(gen_random_uuid())$$, '42501', 'a signed-in user is required',
  'no sub, no user');
select tests.reset_identity();

select tests.clear_authentication();
select throws_ok($$select public.get_checkout_package(gen_random_uuid())$$, '42501', null, 'anon is refused');
select tests.authenticate_as_service_role();
select throws_ok($$select public.get_checkout_package(gen_random_uuid())$$, '42501', null,
  'service_role is refused');
select tests.reset_identity();

-- record_pending_recharge: definer, service_role only.
select is_definer('public', 'record_pending_recharge', array['uuid', 'text', 'bigint', 'bigint', 'text'],
  'record_pending_recharge is SECURITY DEFINER');
select function_privs_are('public', 'record_pending_recharge', array['uuid', 'text', 'bigint', 'bigint', 'text'],
  'anon', '{}', 'anon cannot record');
select function_privs_are('public', 'record_pending_recharge', array['uuid', 'text', 'bigint', 'bigint', 'text'],
  'authenticated', '{}', 'authenticated cannot record');
select function_privs_are('public', 'record_pending_recharge', array['uuid', 'text', 'bigint', 'bigint', 'text'],
  'service_role', array['EXECUTE'], 'service_role can record');

select tests.authenticate_as(:'u1');
select throws_ok(format($$select public.record_pending_recharge(%L, 'cs_test_pgtap_mine', 1000000)$$, :'u1'),
  '42501', null, 'a user cannot record a recharge for themselves');
select tests.authenticate_as_service_role();

create temp table first_call as
select public.record_pending_recharge(:'u1', 'cs_test_pgtap_610', 100, 199, 'EUR') as result;
select is((select result ->> 'created' from first_call), 'true', 'the first call creates the recharge');
select results_eq(
  $$select status, credits, amount_cents, currency, completed_at is null
    from public.credit_recharge where stripe_checkout_session_id = 'cs_test_pgtap_610'$$,
  $$values ('pending'::text, 100::bigint, 199::bigint, 'eur'::text, true)$$,
  'it is pending, with the credits, amount and a lowercased currency'
);
select is(
  public.record_pending_recharge(:'u1', 'cs_test_pgtap_610', 100, 199, 'eur') - 'created',
  (select result - 'created' from first_call),
  'a repeat returns the same recharge'
);
select is((public.record_pending_recharge(:'u1', 'cs_test_pgtap_610', 100, 199, 'eur') ->> 'created')::boolean, false,
  'with created = false');
select is((select count(*)::int from public.credit_recharge where stripe_checkout_session_id = 'cs_test_pgtap_610'), 1,
  'and no second row');
select throws_ok(format($$select public.record_pending_recharge(%L, 'cs_test_pgtap_610', 100)$$, :'u2'), 'CR002',
  null, 'the same session for another user is refused');
select throws_ok(format($$select public.record_pending_recharge(%L, 'cs_test_pgtap_610', 999)$$, :'u1'), 'CR002',
  null, 'the same session with other credits is refused');
select throws_ok($$select public.record_pending_recharge(gen_random_uuid(), 'cs_test_pgtap_ghost', 10)$$, 'CR004',
  null, 'an unknown user is refused');
select throws_ok(format($$select public.record_pending_recharge(%L, 'pi_not_a_session', 10)$$, :'u1'), '22023',
  null, 'a session id must look like cs_...');
select throws_ok(format($$select public.record_pending_recharge(%L, 'cs_test_pgtap_zero', 0)$$, :'u1'), '22023',
  null, 'credits must be positive');
select tests.reset_identity();

-- The webhook got there first (a fast payment): recording afterwards finds the completed one.
select public.handle_stripe_event(jsonb_build_object(
  'id', 'evt_pgtap_610_fast', 'type', 'checkout.session.completed', 'created', 1764115200,
  'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'cs_test_pgtap_610_fast', 'client_reference_id', :'u2', 'payment_status', 'paid',
    'amount_total', 300, 'currency', 'usd', 'metadata', jsonb_build_object('credits', '300')))));
select tests.authenticate_as_service_role();
select is(public.record_pending_recharge(:'u2', 'cs_test_pgtap_610_fast', 300, 300, 'usd') ->> 'status', 'completed',
  'recording after the webhook returns the completed recharge, untouched');
select tests.reset_identity();

select * from finish();
rollback;
