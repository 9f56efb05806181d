-- Test: the inbox row of a Stripe event is written once on the common path (inserted already
-- processed, attempt 1) and every other outcome is still recorded exactly: ignored, deferred,
-- failed (with one failure-log row per failed attempt), duplicate, and a retry that succeeds.
-- Write counts come from pg_stat_xact_user_tables, which counts this transaction's own writes.
begin;
select plan(24);

select tests.create_user() as ua \gset

-- Inserts and updates of inbox rows made so far by this transaction.
create function pg_temp.inbox_writes() returns text language sql as $$
  select format('%s inserted, %s updated', n_tup_ins, n_tup_upd)
  from pg_catalog.pg_stat_xact_user_tables where relid = 'credit_private.stripe_webhook_event'::regclass
$$;

create function pg_temp.inbox(p_event_id text) returns text language sql as $$
  select format('%s/%s/%s/%s', status, attempts, coalesce(last_error_code, '-'),
    case when processed_at is null then 'unprocessed' else 'processed_at' end)
  from credit_private.stripe_webhook_event where event_id = p_event_id
$$;

create function pg_temp.failures(p_event_id text) returns text language sql as $$
  select coalesce(string_agg(format('%s:%s', attempt, error_code), ',' order by attempt), 'none')
  from credit_private.stripe_webhook_failure where event_id = p_event_id
$$;

-- A new paid session: one insert, no update of its inbox row.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t035_paid', 'checkout.session.completed',
  tests.paid_session('cs_t035_paid', :'ua', '100', p_payment_intent => 'pi_t035_paid'))) ->> 'status', 'processed',
  'a new paid session is processed');
select is(pg_temp.inbox_writes(), '1 inserted, 0 updated', 'its inbox row is written once, by one insert');
select is(pg_temp.inbox('evt_t035_paid'), 'processed/1/-/processed_at', 'stored processed, attempt 1, with processed_at');
select is((select balance from public.user_credit_balance where user_id = :'ua'), 100::bigint, 'and credited');

-- The same event again: a duplicate, nothing written.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t035_paid', 'checkout.session.completed',
  tests.paid_session('cs_t035_paid', :'ua', '100', p_payment_intent => 'pi_t035_paid'))) ->> 'duplicate', 'true', 'a repeat is a duplicate');
select is(pg_temp.inbox_writes(), '1 inserted, 0 updated', 'and writes no inbox row');
select is(pg_temp.inbox('evt_t035_paid'), 'processed/1/-/processed_at', 'attempts stay 1');

-- A type the package does not handle: ignored, with processed_at, attempt 1.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t035_other', 'customer.created', '{"id": "cus_1"}')) ->> 'status',
  'ignored', 'an unhandled type is ignored');
select is(pg_temp.inbox('evt_t035_other'), 'ignored/1/-/processed_at', 'stored ignored, attempt 1');

-- A refund before its payment: deferred, not processed, attempt 1.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t035_refund', 'charge.refunded', jsonb_build_object(
  'id', 'ch_t035', 'object', 'charge', 'payment_intent', 'pi_t035_late', 'amount', 1000,
  'amount_refunded', 1000, 'currency', 'usd', 'refunded', true))) ->> 'status', 'deferred',
  'a refund before its payment is deferred');
select is(pg_temp.inbox('evt_t035_refund'), 'deferred/1/-/unprocessed', 'stored deferred, attempt 1, no processed_at');

-- Its payment lands: the deferred refund is applied on its second attempt.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t035_late', 'checkout.session.completed',
  tests.paid_session('cs_t035_late', :'ua', '100', p_payment_intent => 'pi_t035_late'))) ->> 'status', 'processed', 'the payment is processed');
select is(pg_temp.inbox('evt_t035_refund'), 'processed/2/-/processed_at', 'and the deferred refund with it, attempt 2');
select is((select balance from public.user_credit_balance where user_id = :'ua'), 100::bigint,
  'credited 100 then refunded 100');

-- A first attempt that fails: stored failed with its error, attempt 1, one failure-log row, no effect.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t035_bad', 'checkout.session.completed',
  tests.paid_session('cs_t035_bad', '00000000-0000-4000-8000-000000000035', '100', p_payment_intent => 'pi_t035_bad'))) ->> 'status',
  'failed', 'a session naming an unknown user fails');
select is(pg_temp.inbox('evt_t035_bad'), 'failed/1/CR003/unprocessed', 'stored failed, attempt 1, with its code');
select is(pg_temp.failures('evt_t035_bad'), '1:CR003', 'the failed first attempt is in the failure log');
select is((select count(*) from public.credit_recharge where stripe_checkout_session_id = 'cs_t035_bad'), 0::bigint,
  'and left no recharge');

-- Delivered again, still failing: attempt 2, a second failure-log row.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t035_bad', 'checkout.session.completed',
  tests.paid_session('cs_t035_bad', '00000000-0000-4000-8000-000000000035', '100', p_payment_intent => 'pi_t035_bad'))) ->> 'status',
  'failed', 'the redelivery fails again');
select is(pg_temp.inbox('evt_t035_bad'), 'failed/2/CR003/unprocessed', 'attempt 2');
select is(pg_temp.failures('evt_t035_bad'), '1:CR003,2:CR003', 'each failed attempt is logged once');

-- The user now exists: the next delivery succeeds on attempt 3 and clears the error.
insert into auth.users (id, email) values ('00000000-0000-4000-8000-000000000035', 't035@example.com');
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t035_bad', 'checkout.session.completed',
  tests.paid_session('cs_t035_bad', '00000000-0000-4000-8000-000000000035', '100', p_payment_intent => 'pi_t035_bad'))) ->> 'status',
  'processed', 'a retry after the cause is fixed succeeds');
select is(pg_temp.inbox('evt_t035_bad'), 'processed/3/-/processed_at', 'attempt 3, error cleared');
select is(pg_temp.failures('evt_t035_bad'), '1:CR003,2:CR003', 'a success adds no failure-log row');

select * from finish();
rollback;
