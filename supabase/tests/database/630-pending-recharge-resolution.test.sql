-- Test: list_stale_pending_recharges (threshold, rotation, bounds) and resolve_pending_recharge (each session state to the right recharge state through the core's checkout path, credited exactly once, dry run, refusals), service_role only.
begin;
select plan(32);

select tests.create_user() as u1 \gset

-- Privileges.
select is_definer('public', 'list_stale_pending_recharges', array['interval', 'integer'],
  'list_stale_pending_recharges is SECURITY DEFINER');
select is_definer('public', 'resolve_pending_recharge', array['uuid', 'jsonb', 'boolean'],
  'resolve_pending_recharge is SECURITY DEFINER');
select function_privs_are('public', f, a, r, case when r = 'service_role' then array['EXECUTE'] else '{}' end,
  format('%s: EXECUTE for %s is %s', f, r, case when r = 'service_role' then 'granted' else 'revoked' end))
from (values ('list_stale_pending_recharges', array['interval', 'integer']),
             ('resolve_pending_recharge', array['uuid', 'jsonb', 'boolean'])) as v(f, a)
cross join unnest(array['anon', 'authenticated', 'service_role']) as r;
select is_empty(
  $$ select 1 from pg_proc where oid = 'credit_private.checkout_session_outcome(jsonb)'::regprocedure
     and (has_function_privilege('service_role', oid, 'EXECUTE') or has_function_privilege('authenticated', oid, 'EXECUTE')) $$,
  'the session mapping is private'
);

-- Pending recharges of several ages; other test files' rows are set aside by the session prefix.
create temp table r as
select s.name, s.credits, s.age, gen_random_uuid() as id, 'cs_test_pgtap_630_' || s.name as session_id
from (values ('paid', 100, 5), ('expired', 200, 4), ('failed', 300, 3), ('open', 400, 2), ('processing', 500, 2),
             ('ghost', 600, 6), ('young', 700, 0)) as s(name, credits, age);
insert into public.credit_recharge (id, user_id, credits, amount_cents, stripe_checkout_session_id, created_at)
select r.id, :'u1', r.credits, r.credits, r.session_id, now() - make_interval(hours => r.age) - interval '1 minute'
from r;
insert into public.credit_recharge (user_id, credits, status, completed_at, stripe_checkout_session_id, created_at)
values (:'u1', 5, 'completed', now(), 'cs_test_pgtap_630_done', now() - interval '9 hours');

create function pg_temp.session(p_name text, p_status text, p_payment_status text, p_intent jsonb default null)
returns jsonb language sql as $$
  select jsonb_build_object('id', r.session_id, 'object', 'checkout.session', 'status', p_status,
    'payment_status', p_payment_status, 'client_reference_id', (select user_id::text from public.credit_recharge
      where id = r.id), 'amount_total', r.credits, 'currency', 'usd', 'payment_intent', p_intent,
    'metadata', jsonb_build_object('credits', r.credits::text))
  from pg_temp.r r where r.name = p_name
$$;
-- The checks below run as service_role, which reads these test fixtures too.
grant select on pg_temp.r to service_role;
grant execute on function pg_temp.session(text, text, text, jsonb) to service_role;

select tests.authenticate_as_service_role();
select results_eq(
  $$select stripe_checkout_session_id from public.list_stale_pending_recharges(interval '1 hour')
    where stripe_checkout_session_id like 'cs_test_pgtap_630_%' order by created_at$$,
  $$values ('cs_test_pgtap_630_ghost'), ('cs_test_pgtap_630_paid'), ('cs_test_pgtap_630_expired'),
           ('cs_test_pgtap_630_failed'), ('cs_test_pgtap_630_open'), ('cs_test_pgtap_630_processing')$$,
  'pending recharges older than the threshold, oldest first; not the young one, not the completed one'
);
select is(
  (select count(*)::int from public.list_stale_pending_recharges(interval '3 hours 30 minutes')
   where stripe_checkout_session_id like 'cs_test_pgtap_630_%'),
  3, 'the threshold is an argument'
);
select is((select count(*)::int from public.list_stale_pending_recharges(max_rows => 1)), 1, 'max_rows caps the list');
select throws_ok($$select * from public.list_stale_pending_recharges(max_rows => 0)$$, '22023', null,
  'max_rows below 1 is refused');
select throws_ok($$select * from public.list_stale_pending_recharges(interval '-1 hour')$$, '22023', null,
  'a negative threshold is refused');

-- Paid: completed and credited, through the core path (payment intent recorded, one entry).
select is(
  public.resolve_pending_recharge((select id from r where name = 'paid'),
    pg_temp.session('paid', 'complete', 'paid', '{"id": "pi_pgtap_630_paid", "status": "succeeded"}')) - 'recharge_id',
  jsonb_build_object('session_id', 'cs_test_pgtap_630_paid', 'outcome', 'completed', 'status', 'completed',
    'applied', true, 'credited', true),
  'a paid session completes and credits its recharge'
);
select tests.reset_identity();
select results_eq(
  $$select status, stripe_payment_intent_id from public.credit_recharge where stripe_checkout_session_id = 'cs_test_pgtap_630_paid'$$,
  $$values ('completed'::text, 'pi_pgtap_630_paid'::text)$$,
  'the expanded PaymentIntent is stored by its id'
);
select results_eq(
  format($$select balance, total_recharged from public.user_credit_balance where user_id = %L$$, :'u1'),
  $$values (100::bigint, 100::bigint)$$,
  'the buyer has the credits'
);
select tests.authenticate_as_service_role();
select is(
  public.resolve_pending_recharge((select id from r where name = 'paid'),
    pg_temp.session('paid', 'complete', 'paid')) ->> 'outcome',
  'already_resolved', 'resolving it again changes nothing'
);
select tests.reset_identity();
select is((select count(*)::int from public.credit_transaction where user_id = :'u1'), 1, 'one ledger entry only');
select tests.authenticate_as_service_role();

select is(public.resolve_pending_recharge((select id from r where name = 'expired'),
  pg_temp.session('expired', 'expired', 'unpaid')) ->> 'outcome', 'expired', 'an expired session expires it');
select is(public.resolve_pending_recharge((select id from r where name = 'failed'),
  pg_temp.session('failed', 'complete', 'unpaid', '{"id": "pi_pgtap_630_failed", "status": "requires_payment_method"}'))
  ->> 'outcome', 'failed', 'a failed bank debit fails it');
select is(public.resolve_pending_recharge((select id from r where name = 'open'),
  pg_temp.session('open', 'open', 'unpaid')) ->> 'outcome', 'still_pending', 'an open session leaves it pending');
select is(public.resolve_pending_recharge((select id from r where name = 'processing'),
  pg_temp.session('processing', 'complete', 'unpaid', '{"id": "pi_pgtap_630_proc", "status": "processing"}'))
  ->> 'outcome', 'still_pending', 'a debit still processing leaves it pending');
select is(public.resolve_pending_recharge((select id from r where name = 'ghost'), null) ->> 'outcome',
  'session_not_found', 'a session Stripe does not know leaves it pending');
select tests.reset_identity();
select results_eq(
  $$select r.name, c.status from pg_temp.r r join public.credit_recharge c on c.id = r.id order by r.name$$,
  $$values ('expired'::text, 'expired'::text), ('failed', 'failed'), ('ghost', 'pending'), ('open', 'pending'),
           ('paid', 'completed'), ('processing', 'pending'), ('young', 'pending')$$,
  'every recharge is in the state its session says'
);
select results_eq(
  $$select r.name, c.checks::int, c.last_outcome from pg_temp.r r
    join credit_private.pending_recharge_check c on c.recharge_id = r.id where r.name in ('paid', 'ghost') order by r.name$$,
  $$values ('ghost'::text, 1, 'session_not_found'::text), ('paid', 2, 'already_resolved')$$,
  'each check is remembered'
);
select tests.authenticate_as_service_role();
select is(
  (select stripe_checkout_session_id from public.list_stale_pending_recharges(interval '1 hour')
   where stripe_checkout_session_id like 'cs_test_pgtap_630_%' order by last_checked_at nulls first, created_at limit 1),
  'cs_test_pgtap_630_ghost',
  'the least recently checked come first'
);

-- Dry run: the outcome without any change.
select is(
  public.resolve_pending_recharge((select id from r where name = 'open'), pg_temp.session('open', 'expired', 'unpaid'),
    dry_run => true) - 'recharge_id',
  jsonb_build_object('session_id', 'cs_test_pgtap_630_open', 'outcome', 'expired', 'status', 'pending',
    'applied', false, 'credited', false),
  'a dry run tells what would happen'
);
select is((select status from public.credit_recharge where id = (select id from r where name = 'open')), 'pending',
  'and leaves the recharge as it was');

-- Refusals.
select throws_ok(
  format($$select public.resolve_pending_recharge(%L, pg_temp.session('paid', 'complete', 'paid'))$$,
    (select id from r where name = 'open')),
  '22023', null, 'a session of another recharge is refused');
select throws_ok($$select public.resolve_pending_recharge(gen_random_uuid(), null)$$, 'PT404', null,
  'an unknown recharge is a 404');
select throws_ok(
  format($$select public.resolve_pending_recharge(%L, jsonb_set(pg_temp.session('open', 'complete', 'paid'),
    '{metadata,credits}', '"999999"'))$$, (select id from r where name = 'open')),
  'CR003', null, 'a session selling other credits than its recharge is refused by the core');
select tests.reset_identity();

select * from finish();
rollback;
