-- Test: negative_balances: a clawback below zero is named as expected, an unexplained one as suspect; neither is "repaired" beyond the ledger.
begin;
select plan(7);

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
select pg_temp.named(public.diagnose_credits(100000), 'negative_balances', 'user_id') as id;

create temp table ids (name text primary key, id uuid);
insert into ids values ('refunded', tests.create_user()), ('edited', tests.create_user()), ('fine', tests.create_user());

-- Bought 100, spent 80, then the payment was refunded in full: the clawback takes 100.
select pg_temp.pay((select id from ids where name = 'refunded'), 'cs_t115_1', 100);
select public.spend_credits((select id from ids where name = 'refunded'), 80, 't115-spend', null);
select public.handle_stripe_event(jsonb_build_object('id', 'evt_t115_refund', 'object', 'event', 'type', 'charge.refunded',
  'created', 1700000001, 'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'ch_t115', 'object', 'charge', 'amount', 100, 'amount_refunded', 100, 'currency', 'usd',
    'payment_intent', 'pi_cs_t115_1'))));
-- A balance edited below zero by hand.
select pg_temp.pay((select id from ids where name = 'edited'), 'cs_t115_2', 50);
update public.user_credit_balance set balance = -5 where user_id = (select id from ids where name = 'edited');
select pg_temp.pay((select id from ids where name = 'fine'), 'cs_t115_3', 50);

create temp table report as select public.diagnose_credits(100000) as r;
create temp table findings as
select f from report, jsonb_array_elements(r #> '{categories,negative_balances,findings}') f;

select set_eq(
  $$ select id from pg_temp.named((select r from report), 'negative_balances', 'user_id') except select id from baseline $$,
  $$ select id::text from ids where name in ('refunded', 'edited') $$,
  'the diagnosis names exactly the two negative balances'
);
select is(
  (select row(f ->> 'balance', f ->> 'total_recharged', f ->> 'clawed_back')::text from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'refunded')),
  row('-80', '100', '100')::text, 'a finding names the balance, the total and what refunds took back');
select ok(
  (select f ->> 'suggested_action' like 'Expected after a refund%' from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'refunded')),
  'a clawback below zero is explained as the documented policy');
select ok(
  (select f ->> 'suggested_action' like 'Not explained by refunds%' from findings
   where f ->> 'user_id' = (select id::text from ids where name = 'edited')),
  'an unexplained negative balance points at balance_mismatches');

select public.fix_all_credits(dry_run => false, actor => 'test-115', reason => 'fix all');
select is(
  (select b.balance from public.user_credit_balance b where b.user_id = (select id from ids where name = 'refunded')),
  -80::bigint, 'fix_all leaves a negative balance the ledger justifies');
select is(
  (select b.balance from public.user_credit_balance b where b.user_id = (select id from ids where name = 'edited')),
  50::bigint, 'the edited one is a mismatch, and recomputed to the ledger');
select set_eq(
  $$ select id from pg_temp.named(public.diagnose_credits(100000), 'negative_balances', 'user_id') except select id from baseline $$,
  $$ select id::text from ids where name = 'refunded' $$,
  'only the justified negative balance is still named'
);

select * from finish();
rollback;
