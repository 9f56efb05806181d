-- Test: stuck_recharges: pending recharges older than the threshold (a setting) are named, with their failed event if any; never credited by a repair.
begin;
select plan(8);

create temp table baseline as
select tests.named(public.diagnose_credits(100000), 'stuck_recharges', 'recharge_id') as id;

create temp table ids (name text primary key, id uuid);
insert into ids values ('alice', tests.create_user());
insert into public.credit_recharge (user_id, credits, amount_cents, status, completed_at, stripe_checkout_session_id, created_at)
select (select id from ids where name = 'alice'), 100, 1000, s.status, null, s.session, now() - s.age
from (values
  ('pending', 'cs_t114_old', interval '2 hours'),
  ('pending', 'cs_t114_linked', interval '3 hours'),
  ('pending', 'cs_t114_young', interval '30 minutes'),
  ('expired', 'cs_t114_expired', interval '5 hours'),
  ('failed', 'cs_t114_failed', interval '5 hours')
) as s (status, session, age);
insert into ids select 'r_' || substr(r.stripe_checkout_session_id, 9), r.id
from public.credit_recharge r where r.stripe_checkout_session_id like 'cs\_t114\_%';
-- The linked one has an event that failed for good (needs a human), so no repair touches it.
insert into credit_private.stripe_webhook_event (event_id, type, payload, status, attempts, last_error, last_error_code)
values ('evt_t114_linked', 'checkout.session.async_payment_succeeded',
  jsonb_build_object('id', 'evt_t114_linked', 'type', 'checkout.session.async_payment_succeeded',
    'data', jsonb_build_object('object', jsonb_build_object('id', 'cs_t114_linked', 'client_reference_id', 'nobody'))),
  'failed', 1, 'checkout session cs_t114_linked names user "nobody", which is not a uuid', 'CR003');

create temp table report as select public.diagnose_credits(100000) as r;
create temp table findings as
select f from report, jsonb_array_elements(r #> '{categories,stuck_recharges,findings}') f;

select set_eq(
  $$ select id from tests.named((select r from report), 'stuck_recharges', 'recharge_id') except select id from baseline $$,
  $$ select id::text from ids where name in ('r_old', 'r_linked') $$,
  'the diagnosis names exactly the pending recharges older than one hour'
);
select is(
  (select row(f ->> 'user_id', f ->> 'credits', f ->> 'amount_cents', f ->> 'stripe_checkout_session_id', f ->> 'age')::text
   from findings where f ->> 'recharge_id' = (select id::text from ids where name = 'r_old')),
  row((select id::text from ids where name = 'alice'), '100', '1000', 'cs_t114_old', '02:00:00')::text,
  'a finding names the user, the amounts, the session and the age'
);
select ok(
  (select f ->> 'unfinished_event_id' = 'evt_t114_linked' and f ->> 'suggested_action' like 'Its event evt_t114_linked is failed%'
   from findings where f ->> 'recharge_id' = (select id::text from ids where name = 'r_linked')),
  'a stuck recharge whose event failed points at that event'
);
select ok(
  (select f ->> 'unfinished_event_id' is null and f ->> 'suggested_action' like 'Look the Checkout Session up in Stripe%'
   from findings where f ->> 'recharge_id' = (select id::text from ids where name = 'r_old')),
  'one without an event says to look the session up in Stripe'
);
select is((select r #>> '{settings,stuck_recharge_age}' from report), '01:00:00', 'the default threshold is one hour');

update credit_private.settings set stuck_recharge_age = interval '10 minutes';
select set_eq(
  $$ select id from tests.named(public.diagnose_credits(100000), 'stuck_recharges', 'recharge_id') except select id from baseline $$,
  $$ select id::text from ids where name in ('r_old', 'r_linked', 'r_young') $$,
  'the threshold is read from settings'
);

-- No repair credits a pending recharge.
create temp table before_recharges as
select r.* from public.credit_recharge r where r.user_id = (select id from ids where name = 'alice');
select public.fix_all_credits(dry_run => false, actor => 'test-114', reason => 'fix all');
select set_eq(
  $$ select r.* from public.credit_recharge r where r.user_id = (select id from ids where name = 'alice') $$,
  $$ select * from before_recharges $$,
  'fix_all leaves the pending recharges pending'
);
select is(
  (select count(*) from public.credit_transaction t where t.user_id = (select id from ids where name = 'alice')),
  0::bigint, 'and credits nothing');

select * from finish();
rollback;
