-- Test: spend_credits debits once per idempotency key, never overdraws, and refuses bad arguments with distinct codes.
-- Called as service_role, the only role allowed to (see 020).
begin;
select plan(44);

select tests.create_user() as s1 \gset
select tests.create_user() as s2 \gset
select tests.create_user() as s3 \gset

create function pg_temp.buy(p_key text, p_user uuid, p_credits bigint) returns text language sql as $$
  select public.handle_stripe_event(jsonb_build_object(
    'id', 'evt_t050_' || p_key, 'object', 'event', 'type', 'checkout.session.completed', 'created', 1764000000,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'cs_t050_' || p_key, 'object', 'checkout.session', 'client_reference_id', p_user,
      'payment_status', 'paid', 'payment_intent', 'pi_t050_' || p_key, 'amount_total', p_credits * 10,
      'currency', 'usd', 'metadata', jsonb_build_object('credits', p_credits::text))))) ->> 'status'
$$;

-- balance/total_recharged/number of ledger entries of a user.
create function pg_temp.account(p_user uuid) returns text language sql as $$
  select format('%s/%s/%s',
    coalesce((select balance from public.user_credit_balance where user_id = p_user), 0),
    coalesce((select total_recharged from public.user_credit_balance where user_id = p_user), 0),
    (select count(*) from public.credit_transaction where user_id = p_user))
$$;

grant execute on function pg_temp.account(uuid) to service_role;

select is(pg_temp.buy('s1', :'s1', 100), 'processed', 'setup: s1 buys 100 credits');
select is(pg_temp.buy('s2', :'s2', 10), 'processed', 'setup: s2 buys 10 credits');

select tests.authenticate_as_service_role();

-- The first result is kept to compare replays with it.
create temporary table first_spend as
select public.spend_credits(:'s1', 30, 't050-k1', 'Image generation') as r;

-- ---------------------------------------------------------------------------------------
-- A debit
-- ---------------------------------------------------------------------------------------
select is(
  (select r - 'transaction_id' from first_spend),
  jsonb_build_object('user_id', :'s1', 'amount', 30, 'balance_after', 70, 'replayed', false),
  'a spend returns user, amount, balance_after and replayed = false');
select is(
  (select format('%s|%s|%s|%s|%s|%s', t.user_id = :'s1', t.type, t.amount, t.balance_after, t.description, t.recharge_id is null)
   from public.credit_transaction t, first_spend f where t.id = (f.r ->> 'transaction_id')::uuid),
  't|spend|-30|70|Image generation|t', 'the returned transaction is a spend entry of -30 with balance_after 70');
select is(pg_temp.account(:'s1'), '70/100/2', 'the balance drops to 70; total_recharged is unchanged');

-- ---------------------------------------------------------------------------------------
-- Idempotency
-- ---------------------------------------------------------------------------------------
select is(
  public.spend_credits(:'s1', 30, 't050-k1', 'Image generation'),
  (select jsonb_set(r, '{replayed}', 'true') from first_spend),
  'the same key again returns the first result (same transaction id) with replayed = true');
select is(
  public.spend_credits(:'s1', 30, 't050-k1', 'another description') ->> 'transaction_id',
  (select r ->> 'transaction_id' from first_spend),
  'a replay with another description still returns the first transaction');
select is(pg_temp.account(:'s1'), '70/100/2', 'replays debit nothing more');
select throws_ok(format($$select public.spend_credits(%L, 31, 't050-k1')$$, :'s1'), 'CR002',
  'idempotency key spend:t050-k1 was already used with different parameters',
  'the same key with another amount is refused with CR002');
select throws_ok(format($$select public.spend_credits(%L, 30, 't050-k1')$$, :'s2'), 'CR002',
  'idempotency key spend:t050-k1 was already used with different parameters',
  'the same key for another user is refused with CR002');
select is(pg_temp.account(:'s2'), '10/10/1', 'the other user was not debited');
select is(
  (select count(*)::int from public.credit_transaction where idempotency_key = 'spend:t050-k1'),
  1, 'the key names exactly one ledger entry');

-- ---------------------------------------------------------------------------------------
-- Overdraft
-- ---------------------------------------------------------------------------------------
select throws_ok(format($$select public.spend_credits(%L, 71, 't050-k2')$$, :'s1'), 'CR001', 'insufficient credits',
  'spending more than the balance is refused with CR001');
select is(pg_temp.account(:'s1'), '70/100/2', 'a refused spend writes nothing');
select is(
  (select count(*)::int from public.credit_transaction where idempotency_key = 'spend:t050-k2'),
  0, 'a refused spend does not burn its key');
select is(
  (public.spend_credits(:'s1', 70, 't050-k2') ->> 'balance_after')::bigint, 0::bigint,
  'the same key then spends exactly the whole balance, down to 0');
select throws_ok(format($$select public.spend_credits(%L, 1, 't050-k3')$$, :'s1'), 'CR001', 'insufficient credits',
  'at 0, even 1 credit is refused');
select is(
  public.spend_credits(:'s1', 30, 't050-k1') ->> 'replayed', 'true',
  'a replay of an earlier spend still answers (replayed) even though the balance is now 0');
select is(pg_temp.account(:'s1'), '0/100/3', 's1 has spent everything, in two entries');

-- ---------------------------------------------------------------------------------------
-- Unknown user and bad arguments
-- ---------------------------------------------------------------------------------------
select throws_ok($$select public.spend_credits('50000000-0000-4000-8000-000000000404', 1, 't050-ghost')$$, 'CR004',
  'unknown user 50000000-0000-4000-8000-000000000404', 'an unknown user is refused with CR004');
select throws_ok(format($$select public.spend_credits(%L, 0, 't050-zero')$$, :'s2'), '22023',
  'amount must be a positive integer, got 0', 'amount 0 is refused with 22023');
select throws_ok(format($$select public.spend_credits(%L, -5, 't050-neg')$$, :'s2'), '22023',
  'amount must be a positive integer, got -5', 'a negative amount (a credit in disguise) is refused with 22023');
select throws_ok(format($$select public.spend_credits(%L, null, 't050-null')$$, :'s2'), '22023',
  'amount must be a positive integer, got null', 'a null amount is refused with 22023');
select throws_ok($$select public.spend_credits(null, 1, 't050-nouser')$$, '22023', 'user_id is required',
  'a null user is refused with 22023');
select throws_ok(format($$select public.spend_credits(%L, 1, null)$$, :'s2'), '22023',
  'idempotency_key must be 1 to 200 characters', 'a null key is refused with 22023');
select throws_ok(format($$select public.spend_credits(%L, 1, '')$$, :'s2'), '22023',
  'idempotency_key must be 1 to 200 characters', 'an empty key is refused with 22023');
select throws_ok(format($$select public.spend_credits(%L, 1, repeat('k', 201))$$, :'s2'), '22023',
  'idempotency_key must be 1 to 200 characters', 'a key over 200 characters is refused with 22023');
select is(pg_temp.account(:'s2'), '10/10/1', 'no refused call wrote anything');
select is(
  (public.spend_credits(:'s2', 1, repeat('k', 200)) ->> 'balance_after')::bigint, 9::bigint,
  'a key of exactly 200 characters is accepted');
select is(
  (public.spend_credits(:'s2', 1, 't050-nodesc') ->> 'balance_after')::bigint, 8::bigint,
  'the description is optional');
select is(
  (public.spend_credits(user_id => :'s2', amount => 2, idempotency_key => 't050-named', description => 'named')
    ->> 'balance_after')::bigint,
  6::bigint, 'named arguments (as PostgREST passes them) work');

-- A user with no balance row at all has 0 credits: refused, and no ledger entry.
select throws_ok(format($$select public.spend_credits(%L, 1, 't050-s3')$$, :'s3'), 'CR001', 'insufficient credits',
  'a user who never bought credits cannot spend');
select is(pg_temp.account(:'s3'), '0/0/0', 'and has no ledger entry');

-- ---------------------------------------------------------------------------------------
-- A negative balance (after a clawback) refuses every spend until it is positive again
-- ---------------------------------------------------------------------------------------
select tests.reset_identity();
select is(pg_temp.buy('s3', :'s3', 50), 'processed', 's3 buys 50 credits');
select tests.authenticate_as_service_role();
select is((public.spend_credits(:'s3', 40, 't050-s3-a') ->> 'balance_after')::bigint, 10::bigint, 's3 spends 40');
select tests.reset_identity();
select is(
  public.handle_stripe_event(jsonb_build_object(
    'id', 'evt_t050_s3_refund', 'type', 'charge.refunded', 'created', 1764000000,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'ch_t050_s3', 'object', 'charge', 'amount', 500, 'amount_refunded', 500,
      'payment_intent', 'pi_t050_s3', 'currency', 'usd')))) ->> 'status',
  'processed', 'the 50-credit payment is refunded in full');
select is(pg_temp.account(:'s3'), '-40/50/3', 's3''s balance is now -40');
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.spend_credits(%L, 1, 't050-s3-b')$$, :'s3'), 'CR001', 'insufficient credits',
  'spending 1 credit is refused while the balance is negative');
select tests.reset_identity();
select is(pg_temp.buy('s3b', :'s3', 45), 'processed', 's3 buys 45 more credits');
select is(pg_temp.account(:'s3'), '5/95/4', 's3''s balance is 5 again');
select tests.authenticate_as_service_role();
select throws_ok(format($$select public.spend_credits(%L, 6, 't050-s3-c')$$, :'s3'), 'CR001', 'insufficient credits',
  'spending above the positive balance is still refused');
select is((public.spend_credits(:'s3', 5, 't050-s3-c') ->> 'balance_after')::bigint, 0::bigint,
  'spending within the positive balance works again');

-- ---------------------------------------------------------------------------------------
-- Every spend entry is negative and never left a balance below zero
-- ---------------------------------------------------------------------------------------
select tests.reset_identity();
select is(
  array(select format('%s:%s:%s', idempotency_key, amount, balance_after) from public.credit_transaction
        where user_id in (:'s1', :'s2', :'s3') and type = 'spend' and (amount >= 0 or balance_after < 0)),
  '{}'::text[], 'no spend entry is positive or left a negative balance');
select is(
  (select array_agg(format('%s=%s', b.balance, (select sum(amount) from public.credit_transaction t where t.user_id = b.user_id))
                    order by b.balance)
   from public.user_credit_balance b where b.user_id in (:'s1', :'s2', :'s3')),
  array['0=0', '0=0', '6=6'], 'each balance equals the sum of its ledger');

select * from finish();
rollback;
