-- Test: failed_webhooks: failed, long-received and long-deferred inbox events are named with attempts and errors; retried once from their payloads, audited.
begin;
select plan(25);

create temp table baseline as
select tests.named(public.diagnose_credits(100000), 'failed_webhooks', 'event_id') as id;

create temp table ids (name text primary key, id uuid);
insert into ids values ('alice', tests.create_user()), ('bob', tests.create_user());

-- A delivery that failed on a permission error (stored as the webhook stores failures).
insert into credit_private.stripe_webhook_event (event_id, type, payload, status, attempts, last_error, last_error_code)
values ('evt_t113_rls', 'checkout.session.completed',
  tests.stripe_event('evt_t113_rls', 'checkout.session.completed',
    tests.paid_session('cs_t113_rls', (select id from ids where name = 'alice'), '70')),
  'failed', 3, 'new row violates row-level security policy for table "credit_recharge"', '42501');
-- A malformed event: the real webhook path stores it as failed (CR003).
select public.handle_stripe_event(tests.stripe_event('evt_t113_bad', 'checkout.session.completed',
  tests.paid_session('cs_t113_bad', (select id from ids where name = 'alice'), 'abc')));
-- Received long ago and never processed; and one received just now.
insert into credit_private.stripe_webhook_event (event_id, type, payload, status, received_at, updated_at)
values
  ('evt_t113_old', 'checkout.session.completed',
   tests.stripe_event('evt_t113_old', 'checkout.session.completed',
    tests.paid_session('cs_t113_old', (select id from ids where name = 'bob'), '30')),
   'received', now() - interval '1 hour', now() - interval '1 hour'),
  ('evt_t113_young', 'checkout.session.completed',
   tests.stripe_event('evt_t113_young', 'checkout.session.completed',
    tests.paid_session('cs_t113_young', (select id from ids where name = 'bob'), '5')),
   'received', now(), now());
-- A refund whose payment never arrived: deferred for two days, and one deferred just now.
select public.handle_stripe_event(jsonb_build_object('id', e.id, 'object', 'event', 'type', 'charge.refunded',
  'created', 1700000000, 'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'ch_' || e.id, 'object', 'charge', 'amount', 500, 'amount_refunded', 500, 'currency', 'usd',
    'payment_intent', 'pi_never_' || e.id))))
from (values ('evt_t113_deferred_old'), ('evt_t113_deferred_young')) as e (id);
update credit_private.stripe_webhook_event set received_at = now() - interval '2 days'
where event_id = 'evt_t113_deferred_old';
-- A processed event.
select tests.pay((select id from ids where name = 'bob'), 'cs_t113_ok', 10);

create temp table report as select public.diagnose_credits(100000) as r;
create temp table findings as
select f from report, jsonb_array_elements(r #> '{categories,failed_webhooks,findings}') f;

select set_eq(
  $$ select id from tests.named((select r from report), 'failed_webhooks', 'event_id') except select id from baseline $$,
  $$ values ('evt_t113_rls'), ('evt_t113_bad'), ('evt_t113_old'), ('evt_t113_deferred_old') $$,
  'the diagnosis names exactly the failed, the long-received and the long-deferred events'
);
select is(
  (select row(f ->> 'status', f ->> 'attempts', f ->> 'last_error_code', f ->> 'looks_like_permission_error',
     f ->> 'needs_a_human', f ->> 'user_reference', f ->> 'stripe_object_id')::text
   from findings where f ->> 'event_id' = 'evt_t113_rls'),
  row('failed', '3', '42501', 'true', 'false', (select id::text from ids where name = 'alice'), 'cs_t113_rls')::text,
  'a permission failure is named with attempts, error, user and session, and flagged as such'
);
select is(
  (select row(f ->> 'status', f ->> 'last_error_code', f ->> 'needs_a_human')::text from findings where f ->> 'event_id' = 'evt_t113_bad'),
  row('failed', 'CR003', 'true')::text, 'a malformed event is flagged as needing a human');
select ok(
  (select f ->> 'last_error' like '%metadata.credits "abc"%' from findings where f ->> 'event_id' = 'evt_t113_bad'),
  'with its last error');
select ok(
  (select f ->> 'suggested_action' like 'Its payment (pi_never_evt_t113_deferred_old) was never credited%'
   from findings where f ->> 'event_id' = 'evt_t113_deferred_old'),
  'a long-deferred refund names the payment that never arrived');
select ok(
  exists (select 1 from report, jsonb_array_elements(r #> '{categories,installation,findings}') f
          where f ->> 'kind' = 'inbox_event' and f ->> 'name' = 'evt_t113_rls')
  and not exists (select 1 from report, jsonb_array_elements(r #> '{categories,installation,findings}') f
          where f ->> 'kind' = 'inbox_event' and f ->> 'name' <> 'evt_t113_rls'),
  'the installation check flags the permission failure, and only it'
);

-- Dry run of retrying all.
create temp table fp as select tests.fingerprint() as v;
create temp table dry as select public.retry_failed_webhooks(dry_run => true) as r;
select is(tests.fingerprint(), (select v from fp), 'the dry run changes nothing');
select set_eq(
  $$ select c ->> 'target_id' from dry, jsonb_array_elements(r -> 'changes') c where c ->> 'target_id' like 'evt_t113%' $$,
  $$ values ('evt_t113_rls'), ('evt_t113_old') $$,
  'the dry run would retry the permission failure and the long-received event'
);
select is(
  (select c #>> '{after,status}' from dry, jsonb_array_elements(r -> 'changes') c where c ->> 'target_id' = 'evt_t113_rls'),
  'processed', 'and tells what the retry would do');
select ok(
  (select exists (select 1 from jsonb_array_elements(r -> 'skipped') k where k ->> 'target_id' = 'evt_t113_bad') from dry),
  'the malformed event is listed as skipped');

-- Retry all.
create temp table all_run as
select public.retry_failed_webhooks(dry_run => false, actor => 'test-113', reason => 'retry all') as r;
select set_eq(
  $$ select c ->> 'target_id' from all_run, jsonb_array_elements(r -> 'changes') c where c ->> 'target_id' like 'evt_t113%' $$,
  $$ values ('evt_t113_rls'), ('evt_t113_old') $$,
  'retrying all retries exactly those two'
);
select is(
  (select array_agg(e.status order by e.event_id) from credit_private.stripe_webhook_event e
   where e.event_id in ('evt_t113_rls', 'evt_t113_old', 'evt_t113_young', 'evt_t113_bad', 'evt_t113_deferred_old')),
  array['failed', 'deferred', 'processed', 'processed', 'received'],
  'the two retried events are processed; the malformed, deferred and young ones are untouched'
);
select is(
  (select row(b.balance, b.total_recharged)::text from public.user_credit_balance b where b.user_id = (select id from ids where name = 'alice')),
  row(70, 70)::text, 'alice is credited by the retried event');
select is(
  (select row(b.balance, b.total_recharged)::text from public.user_credit_balance b where b.user_id = (select id from ids where name = 'bob')),
  row(40, 40)::text, 'bob by his');
select is(
  (select row(l.before ->> 'status', l.after ->> 'status', l.after ->> 'attempts', l.actor, l.reason, l.dry_run)::text
   from credit_private.repair_log l, all_run where l.run_id = (all_run.r ->> 'run_id')::uuid and l.target_id = 'evt_t113_rls'),
  row('failed', 'processed', '4', 'test-113', 'retry all', false)::text, 'the audit row holds the inbox row before and after');
select set_eq(
  $$ select id from tests.named(public.diagnose_credits(100000), 'failed_webhooks', 'event_id') except select id from baseline $$,
  $$ values ('evt_t113_bad'), ('evt_t113_deferred_old') $$,
  'only the malformed and the long-deferred events are still named'
);

-- Second run, and retries by id.
create temp table fp2 as select tests.fingerprint() as v;
select is(
  (select (public.retry_failed_webhooks(dry_run => false, actor => 'test-113', reason => 'again') ->> 'nothing_to_do')::boolean),
  true, 'a second retry of all has nothing to do');
select is(tests.fingerprint(), (select v from fp2), 'and changes nothing');
select is(
  (select (public.retry_failed_webhooks(event_id => 'evt_t113_rls', dry_run => false, actor => 'test-113', reason => 'by id') ->> 'nothing_to_do')::boolean),
  true, 'retrying a processed event by id does nothing');
select is(
  (select count(*) from public.credit_transaction t where t.user_id = (select id from ids where name = 'alice')),
  1::bigint, 'alice was credited once');
create temp table bad as
select public.retry_failed_webhooks(event_id => 'evt_t113_bad', dry_run => false, actor => 'test-113', reason => 'by id') as r;
select is(
  (select row(r ->> 'changed', r ->> 'still_failing', r #>> '{changes,0,after,status}', r #>> '{changes,0,after,attempts}')::text from bad),
  row('1', '1', 'failed', '2')::text, 'a malformed event retried by id fails again, counted, and is reported as still failing');
select is(
  (select count(*) from public.credit_recharge r where r.stripe_checkout_session_id = 'cs_t113_bad'),
  0::bigint, 'and credits nothing');
select throws_ok(
  $$ select public.retry_failed_webhooks(event_id => 'evt_t113_nope', dry_run => false, actor => 'test-113', reason => 'x') $$,
  'PT404', null, 'an unknown event is an error (HTTP 404 through PostgREST)');

-- The threshold is a setting.
update credit_private.settings set deferred_webhook_age = interval '1 second', failed_webhook_age = interval '1 second';
select set_eq(
  $$ select id from tests.named(public.diagnose_credits(100000), 'failed_webhooks', 'event_id') except select id from baseline $$,
  $$ values ('evt_t113_bad'), ('evt_t113_deferred_old') $$,
  'rows stamped with the transaction''s own time are younger than any threshold'
);
update credit_private.stripe_webhook_event set received_at = now() - interval '1 minute'
where event_id in ('evt_t113_young', 'evt_t113_deferred_young');
select set_eq(
  $$ select id from tests.named(public.diagnose_credits(100000), 'failed_webhooks', 'event_id') except select id from baseline $$,
  $$ values ('evt_t113_bad'), ('evt_t113_deferred_old'), ('evt_t113_young'), ('evt_t113_deferred_young') $$,
  'with shorter thresholds in settings, younger events are named too'
);

select * from finish();
rollback;
