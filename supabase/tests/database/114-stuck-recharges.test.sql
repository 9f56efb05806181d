-- Test: stuck_recharges: pending recharges older than the threshold (a setting) are named, with their failed event if any; never credited by a repair.
begin;
select plan(8);

-- Local helpers (pg_temp: gone with the session, rolled back with the test).
create function pg_temp.pay(p_user_id uuid, p_session text, p_credits bigint)
returns uuid
language sql
as $$
  select public.handle_stripe_event(jsonb_build_object(
    'id', 'evt_' || p_session, 'object', 'event', 'type', 'checkout.session.completed',
    'created', 1700000000, 'livemode', false,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', p_session, 'object', 'checkout.session', 'client_reference_id', p_user_id,
      'payment_status', 'paid', 'payment_intent', 'pi_' || p_session, 'amount_total', p_credits,
      'currency', 'usd', 'metadata', jsonb_build_object('credits', p_credits::text)))));
  select r.id from public.credit_recharge r where r.stripe_checkout_session_id = p_session;
$$;

-- Everything a repair could change: the three tables, the inbox, policies, ACLs, function
-- settings and cron jobs. Equal before and after means nothing changed.
create function pg_temp.fingerprint()
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
create function pg_temp.named(p_report jsonb, p_category text, p_key text)
returns table (id text)
language sql
as $$
  select f ->> p_key from jsonb_array_elements(p_report #> array['categories', p_category, 'findings']) f
$$;

create temp table baseline as
select pg_temp.named(public.diagnose_credits(100000), 'stuck_recharges', 'recharge_id') as id;

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
  $$ select id from pg_temp.named((select r from report), 'stuck_recharges', 'recharge_id') except select id from baseline $$,
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
  $$ select id from pg_temp.named(public.diagnose_credits(100000), 'stuck_recharges', 'recharge_id') except select id from baseline $$,
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
