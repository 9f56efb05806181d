-- Test: replay_stripe_event re-runs a stored failed or deferred event through process_stripe_event, never applies a processed one twice, and is executable by service_role only.
begin;
select plan(15);

select tests.create_user() as u1 \gset

select is_definer('public', 'replay_stripe_event', array['text'], 'replay_stripe_event is SECURITY DEFINER');
select function_privs_are('public', 'replay_stripe_event', array['text'], 'anon', '{}', 'anon cannot replay');
select function_privs_are('public', 'replay_stripe_event', array['text'], 'authenticated', '{}',
  'authenticated cannot replay');
select function_privs_are('public', 'replay_stripe_event', array['text'], 'service_role', array['EXECUTE'],
  'service_role can replay');

-- A paid session for a user who does not exist yet: stored as failed.
select gen_random_uuid() as late_user \gset
select public.handle_stripe_event(jsonb_build_object(
  'id', 'evt_pgtap_640_paid', 'type', 'checkout.session.completed', 'created', 1764115200,
  'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'cs_test_pgtap_640', 'client_reference_id', :'late_user', 'payment_status', 'paid',
    'payment_intent', 'pi_pgtap_640', 'amount_total', 1000, 'currency', 'usd',
    'metadata', jsonb_build_object('credits', '250')))));
select is((select status from credit_private.stripe_webhook_event where event_id = 'evt_pgtap_640_paid'), 'failed',
  'the event is stored as failed');

select tests.authenticate_as_service_role();
select is(public.replay_stripe_event('evt_pgtap_640_paid') ->> 'status', 'failed',
  'replayed before the cause is fixed, it fails again');
select tests.reset_identity();
select is((select attempts::int from credit_private.stripe_webhook_event where event_id = 'evt_pgtap_640_paid'), 2,
  'and counts the attempt');

insert into auth.users (id, email) values (:'late_user', 'late-640@test.local');
select tests.authenticate_as_service_role();
select is(
  public.replay_stripe_event('evt_pgtap_640_paid') - 'event_id',
  '{"status": "processed", "duplicate": false, "replayed": true, "previous_status": "failed"}'::jsonb,
  'once the user exists, the replay processes it'
);
select is(
  public.replay_stripe_event('evt_pgtap_640_paid') - 'event_id',
  '{"status": "processed", "duplicate": true, "replayed": false, "previous_status": "processed"}'::jsonb,
  'a processed event is not applied again'
);
select tests.reset_identity();
select results_eq(
  format($$select balance, (select count(*)::int from public.credit_transaction where user_id = %1$L)
    from public.user_credit_balance where user_id = %1$L$$, :'late_user'),
  $$values (250::bigint, 1)$$,
  'credited exactly once'
);

-- A refund of a payment the package never saw stays deferred; a replay keeps it so.
select public.handle_stripe_event(jsonb_build_object(
  'id', 'evt_pgtap_640_refund', 'type', 'charge.refunded', 'created', 1764115300,
  'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'ch_pgtap_640', 'payment_intent', 'pi_pgtap_640_other', 'amount', 1000, 'amount_refunded', 1000,
    'currency', 'usd'))));
select tests.authenticate_as_service_role();
select is(public.replay_stripe_event('evt_pgtap_640_refund') ->> 'status', 'deferred',
  'a deferred event is re-run and stays deferred while its payment is unknown');
select is(public.replay_stripe_event('evt_pgtap_640_refund') ->> 'previous_status', 'deferred',
  'the previous status is reported');
select throws_ok($$select public.replay_stripe_event('evt_pgtap_640_missing')$$, 'PT404', null,
  'an event not in the inbox is a 404');
select throws_ok($$select public.replay_stripe_event('')$$, '22023', null, 'an empty id is refused');
select tests.reset_identity();

select tests.clear_authentication();
select throws_ok($$select public.replay_stripe_event('evt_pgtap_640_paid')$$, '42501', null,
  'anon is refused');
select tests.reset_identity();

select * from finish();
rollback;
