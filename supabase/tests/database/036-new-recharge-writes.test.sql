-- Test: a paid session whose recharge is new is credited with its writes and nothing else
-- (migration 20261126008000): the recharge it has just inserted is not locked or read again,
-- the recharge entry's key is not looked up, and the balance row is locked by its update
-- alone. Every other path keeps its lock and lookup, and all of them give the same ledger.
-- Index scans come from pg_stat_get_xact_numscans, which counts this transaction's own.
begin;
select plan(16);

select tests.create_user() as ua \gset
select tests.create_user() as ub \gset

-- Index scans made so far by this transaction (pg_stat_get_xact_numscans), remembered by mark().
create temp table scans_before (index_oid oid primary key, n bigint);
create function pg_temp.mark() returns void language sql as $$
  delete from scans_before;
  insert into scans_before
  select indexrelid, pg_catalog.pg_stat_get_xact_numscans(indexrelid) from pg_catalog.pg_index
  where indrelid in ('public.credit_recharge'::regclass, 'public.credit_transaction'::regclass,
                     'public.user_credit_balance'::regclass);
$$;
create function pg_temp.scans_since_mark(p_index regclass) returns bigint language sql as $$
  select pg_catalog.pg_stat_get_xact_numscans(p_index) - n from scans_before where index_oid = p_index
$$;

-- A user with a balance row already (an earlier recharge), then a new paid session.
select is(tests.pay(:'ua', 'cs_t036_first', 10) is not null, true, 'an earlier recharge gives the user a balance row');
select pg_temp.mark();
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t036_new', 'checkout.session.completed',
  tests.paid_session('cs_t036_new', :'ua', '40'))) ->> 'status', 'processed', 'a new paid session is processed');

select is(pg_temp.scans_since_mark('public.credit_transaction_idempotency_key_unique'), 0::bigint,
  'its recharge entry key is not looked up (the key names a recharge id that did not exist)');
select is(pg_temp.scans_since_mark('public.credit_recharge_pkey'), 1::bigint,
  'its recharge is read by id once, by the foreign key check of its entry, and not re-read or locked');
select is(pg_temp.scans_since_mark('public.user_credit_balance_pkey'), 1::bigint,
  'the balance row is found once, by the update that locks it');
select is((select format('%s/%s', balance, total_recharged) from public.user_credit_balance where user_id = :'ua'),
  '50/50', 'the balance and total_recharged include the 40 credits');
select is((select format('%s/%s/%s/%s', t.amount, t.balance_after, t.idempotency_key = 'recharge:' || r.id,
                         t.description)
           from public.credit_transaction t join public.credit_recharge r on r.id = t.recharge_id
           where r.stripe_checkout_session_id = 'cs_t036_new'),
  '40/50/t/Stripe Checkout cs_t036_new', 'one recharge entry with its key, balance_after and description');
select is((select format('%s/%s', status, completed_at is not null) from public.credit_recharge
           where stripe_checkout_session_id = 'cs_t036_new'), 'completed/t', 'the recharge is completed');

-- A user's very first entry creates the balance row on the way.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t036_firstever', 'checkout.session.completed',
  tests.paid_session('cs_t036_firstever', :'ub', '40'))) ->> 'status', 'processed', 'a new buyer''s first session is processed');
select is((select format('%s/%s', balance, total_recharged) from public.user_credit_balance where user_id = :'ub'),
  '40/40', 'its balance row is created with the credits');

-- A recharge recorded pending beforehand takes the checked path: locked, key looked up.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t036_unpaid', 'checkout.session.completed',
  tests.paid_session('cs_t036_async', :'ua', '40') || '{"payment_status": "unpaid"}')) ->> 'status', 'processed',
  'an unpaid session records a pending recharge');
select pg_temp.mark();
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t036_succeeded', 'checkout.session.async_payment_succeeded',
  tests.paid_session('cs_t036_async', :'ua', '40'))) ->> 'status', 'processed', 'its async payment succeeds');
select is(pg_temp.scans_since_mark('public.credit_transaction_idempotency_key_unique'), 1::bigint,
  'an existing recharge''s entry key is looked up before writing');
select is((select format('%s/%s', balance, total_recharged) from public.user_credit_balance where user_id = :'ua'),
  '90/90', 'and credited once');

-- The same session delivered again under a new event id: the recharge exists, nothing more.
select is(tests.deliver_stripe_event(tests.stripe_event('evt_t036_new_again', 'checkout.session.completed',
  tests.paid_session('cs_t036_new', :'ua', '40'))) ->> 'status', 'processed', 'the session under another event id');
select is((select format('%s/%s', balance, (select count(*) from public.credit_transaction where user_id = :'ua'))
           from public.user_credit_balance where user_id = :'ua'), '90/3', 'credits nothing twice');

select * from finish();
rollback;
