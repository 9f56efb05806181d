-- Test: the reconciliation watermark (forward only, never in the future), the run log, the bulk inbox status lookup, the pg_cron setup function, and that only service_role reaches them.
begin;
select plan(31);

delete from credit_private.stripe_reconciliation_state;

-- Private tables: RLS on, no API role.
select ok((select relrowsecurity from pg_class where oid = c::regclass), format('%s has RLS enabled', c))
from unnest(array['credit_private.stripe_reconciliation_state', 'credit_private.stripe_reconciliation_run',
                  'credit_private.pending_recharge_check']) as c;
select is_empty(
  $$ select t, r from unnest(array['credit_private.stripe_reconciliation_state',
       'credit_private.stripe_reconciliation_run', 'credit_private.pending_recharge_check']) as t
     cross join unnest(array['anon', 'authenticated', 'service_role']) as r
     cross join unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE']) as p
     where has_table_privilege(r, t, p) $$,
  'no API role holds any privilege on the private reconciliation tables'
);

-- The RPCs: definer, service_role only.
create temp table rpcs (name text, args text[]);
insert into rpcs values
  ('get_stripe_reconciliation_state', '{}'),
  ('advance_stripe_reconciliation_watermark', array['timestamp with time zone']),
  ('record_stripe_reconciliation_run', array['jsonb']),
  ('get_stripe_event_statuses', array['text[]']);
select is_definer('public', r.name, r.args, format('%s is SECURITY DEFINER', r.name)) from rpcs r;
select is_empty(
  $$ select r.name, role_name from pg_temp.rpcs r
     cross join unnest(array['public', 'anon', 'authenticated']) as role_name
     where case when role_name = 'public'
       then exists (select 1 from aclexplode((select proacl from pg_proc
              where oid = to_regprocedure(format('public.%s(%s)', r.name, array_to_string(r.args, ','))))) a
              where a.grantee = 0)
       else has_function_privilege(role_name, format('public.%s(%s)', r.name, array_to_string(r.args, ',')), 'EXECUTE')
     end $$,
  'neither PUBLIC, anon nor authenticated can execute them'
);
select is_empty(
  $$ select r.name from pg_temp.rpcs r
     where not has_function_privilege('service_role', format('public.%s(%s)', r.name, array_to_string(r.args, ',')), 'EXECUTE') $$,
  'service_role can execute every one'
);
select tests.authenticate_as(tests.create_user());
select throws_ok($$select public.advance_stripe_reconciliation_watermark(now())$$, '42501', null,
  'a user cannot move the watermark');
select tests.clear_authentication();
select throws_ok($$select public.get_stripe_event_statuses(array['evt_x'])$$, '42501', null,
  'anon cannot look into the inbox');
select tests.reset_identity();

select tests.authenticate_as_service_role();
select is(public.get_stripe_reconciliation_state() -> 'watermark', 'null'::jsonb, 'no watermark before the first run');

select is(
  (public.advance_stripe_reconciliation_watermark('2026-01-10 00:00:00+00') ->> 'watermark')::timestamptz,
  '2026-01-10 00:00:00+00'::timestamptz,
  'the first advance sets it'
);
select is(
  public.advance_stripe_reconciliation_watermark('2026-01-05 00:00:00+00'),
  jsonb_build_object('watermark', '2026-01-10 00:00:00+00'::timestamptz, 'advanced', false),
  'an earlier time leaves it where it is'
);
select is(
  (public.advance_stripe_reconciliation_watermark('2026-01-11 00:00:00+00') ->> 'advanced')::boolean,
  true,
  'a later time moves it'
);
select is(
  (public.get_stripe_reconciliation_state() ->> 'watermark')::timestamptz,
  '2026-01-11 00:00:00+00'::timestamptz,
  'get_stripe_reconciliation_state reads it back'
);
select throws_ok($$select public.advance_stripe_reconciliation_watermark(now() + interval '1 hour')$$, '22023', null,
  'a watermark in the future is refused');
select throws_ok($$select public.advance_stripe_reconciliation_watermark(null)$$, '22023', null,
  'a null watermark is refused');

-- The run log.
select ok(
  public.record_stripe_reconciliation_run('{"ok": true, "dryRun": false, "startedAt": "2026-01-11T00:05:00Z"}') > 0,
  'a run report is stored'
);
select is(
  public.get_stripe_reconciliation_state() #>> '{last_run,ok}', 'true', 'and shows as the last run'
);
select throws_ok($$select public.record_stripe_reconciliation_run('[1]')$$, '22023', null,
  'a report must be an object');
select tests.reset_identity();
select results_eq(
  $$select ok, dry_run, started_at from credit_private.stripe_reconciliation_run order by id desc limit 1$$,
  $$values (true, false, '2026-01-11 00:05:00+00'::timestamptz)$$,
  'ok, dryRun and startedAt are read from the report'
);

-- Bulk inbox lookup.
select public.handle_stripe_event(jsonb_build_object('id', 'evt_pgtap_620_ignored', 'type', 'customer.created',
  'created', 1764115200, 'data', jsonb_build_object('object', jsonb_build_object('id', 'cus_1'))));
select public.handle_stripe_event(jsonb_build_object('id', 'evt_pgtap_620_failed', 'type', 'checkout.session.completed',
  'created', 1764115200, 'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'cs_test_pgtap_620', 'payment_status', 'paid', 'metadata', jsonb_build_object('credits', '5')))));
select tests.authenticate_as_service_role();
select is(
  public.get_stripe_event_statuses(array['evt_pgtap_620_ignored', 'evt_pgtap_620_failed', 'evt_pgtap_620_missing']),
  '{"evt_pgtap_620_ignored": "ignored", "evt_pgtap_620_failed": "failed"}'::jsonb,
  'statuses of the stored events; unknown ids are absent'
);
select is(public.get_stripe_event_statuses('{}'), '{}'::jsonb, 'no ids, empty object');
select throws_ok($$select public.get_stripe_event_statuses(null)$$, '22023', null, 'null is refused');
select throws_ok($$select public.get_stripe_event_statuses(array(select 'evt_' || g from generate_series(1, 5001) g))$$,
  '22023', null, 'more than 5000 ids are refused');
select tests.reset_identity();

-- The pg_cron setup: locally there is no pg_net or Vault, so it schedules nothing and says why.
select matches(credit_private.schedule_stripe_reconciliation(), '^not scheduled: pg_net and Vault are required',
  'without pg_net and Vault nothing is scheduled');
select is_empty($$select 1 from cron.job where jobname = 'stripe-reconcile'$$, 'and no job exists');
select is(credit_private.unschedule_stripe_reconciliation(), false, 'unscheduling a missing job is a no-op');
select throws_ok($$select credit_private.schedule_stripe_reconciliation('every minute')$$, '22023', null,
  'a schedule must be a cron expression');

select * from finish();
rollback;
