-- Test: after a mixed sequence of payments, refunds, disputes, spends and redeliveries, the three tables agree.
-- Each invariant is a query returning its offenders, so a failure names them.
begin;
select plan(18);

select tests.create_user() as i1 \gset
select tests.create_user() as i2 \gset
select tests.create_user() as i3 \gset
select tests.create_user() as i4 \gset
create temporary table touched (user_id uuid primary key);
insert into touched values (:'i1'), (:'i2'), (:'i3'), (:'i4');

-- ---------------------------------------------------------------------------------------
-- Local helpers: every event sent is kept, to be redelivered at the end
-- ---------------------------------------------------------------------------------------
create temporary table sent (seq serial primary key, event jsonb not null);

create function pg_temp.send(p_id text, p_type text, p_object jsonb) returns text language plpgsql as $$
declare
  v_event jsonb := jsonb_build_object('id', p_id, 'object', 'event', 'type', p_type,
    'created', 1764000000, 'livemode', false, 'data', jsonb_build_object('object', p_object));
  v_result jsonb;
begin
  insert into pg_temp.sent (event) values (v_event);
  perform tests.authenticate_as_service_role();
  v_result := public.handle_stripe_event(v_event);
  perform tests.reset_identity();
  return v_result ->> 'status';
end;
$$;

create function pg_temp.session(p_id text, p_user uuid, p_credits text, p_paid boolean, p_pi text, p_amount bigint)
returns jsonb language sql as $$
  select jsonb_strip_nulls(jsonb_build_object(
    'id', p_id, 'object', 'checkout.session', 'client_reference_id', p_user,
    'payment_status', case when p_paid then 'paid' else 'unpaid' end, 'payment_intent', p_pi,
    'amount_total', p_amount, 'currency', 'usd',
    'metadata', case when p_credits is null then '{}'::jsonb else jsonb_build_object('credits', p_credits) end))
$$;

create function pg_temp.charge(p_pi text, p_amount bigint, p_refunded bigint) returns jsonb language sql as $$
  select jsonb_build_object('id', replace(p_pi, 'pi_', 'ch_'), 'object', 'charge', 'amount', p_amount,
    'amount_refunded', p_refunded, 'payment_intent', p_pi, 'currency', 'usd')
$$;

create function pg_temp.dispute(p_pi text, p_amount bigint, p_status text) returns jsonb language sql as $$
  select jsonb_build_object('id', replace(p_pi, 'pi_', 'dp_'), 'object', 'dispute', 'amount', p_amount,
    'charge', replace(p_pi, 'pi_', 'ch_'), 'payment_intent', p_pi, 'currency', 'usd', 'status', p_status)
$$;

-- Spend as service_role; returns the new balance, or the SQLSTATE of the refusal.
create function pg_temp.spend(p_user uuid, p_amount bigint, p_key text) returns text language plpgsql as $$
declare
  v_result text;
begin
  perform tests.authenticate_as_service_role();
  begin
    v_result := public.spend_credits(p_user, p_amount, p_key) ->> 'balance_after';
  exception when sqlstate 'CR001' then
    v_result := 'CR001';
  end;
  perform tests.reset_identity();
  return v_result;
end;
$$;

-- A snapshot of everything the touched users own, to compare before and after redelivery.
create function pg_temp.snapshot() returns text language sql as $$
  select concat_ws(' | ',
    (select string_agg(format('%s:%s:%s', b.user_id, b.balance, b.total_recharged), ',' order by b.user_id)
     from public.user_credit_balance b join pg_temp.touched using (user_id)),
    (select string_agg(format('%s:%s:%s:%s', t.idempotency_key, t.amount, t.balance_after, t.recharge_id), ',' order by t.id)
     from public.credit_transaction t join pg_temp.touched using (user_id)),
    (select string_agg(format('%s:%s:%s:%s:%s', r.id, r.status, r.refunded_credits, r.disputed_credits, r.completed_at is not null),
                       ',' order by r.id)
     from public.credit_recharge r join pg_temp.touched using (user_id)))
$$;

-- ---------------------------------------------------------------------------------------
-- The sequence
-- ---------------------------------------------------------------------------------------
create temporary table step (seq serial, what text, outcome text);
insert into step (what, outcome) values
  -- i1: two purchases (one async), a spend, a partial refund, a dispute that is won
  ('i1 buys A', pg_temp.send('evt_t060_1', 'checkout.session.completed', pg_temp.session('cs_t060_i1a', :'i1', '100', true, 'pi_t060_i1a', 1000))),
  ('i1 starts B unpaid', pg_temp.send('evt_t060_2', 'checkout.session.completed', pg_temp.session('cs_t060_i1b', :'i1', '50', false, 'pi_t060_i1b', 500))),
  ('i1 B succeeds', pg_temp.send('evt_t060_3', 'checkout.session.async_payment_succeeded', pg_temp.session('cs_t060_i1b', :'i1', '50', true, 'pi_t060_i1b', 500))),
  ('i1 spends 30', pg_temp.spend(:'i1', 30, 't060-i1-1')),
  ('i1 A refunded 300', pg_temp.send('evt_t060_4', 'charge.refunded', pg_temp.charge('pi_t060_i1a', 1000, 300))),
  ('i1 B disputed', pg_temp.send('evt_t060_5', 'charge.dispute.created', pg_temp.dispute('pi_t060_i1b', 500, 'needs_response'))),
  ('i1 spends 50 (too much)', pg_temp.spend(:'i1', 50, 't060-i1-2')),
  ('i1 spends 20', pg_temp.spend(:'i1', 20, 't060-i1-3')),
  ('i1 B dispute won', pg_temp.send('evt_t060_6', 'charge.dispute.closed', pg_temp.dispute('pi_t060_i1b', 500, 'won'))),
  ('i1 replays spend 20', pg_temp.spend(:'i1', 20, 't060-i1-3')),
  -- i2: a refund before its payment, duplicate and repeated session events, spends
  ('i2 refund first', pg_temp.send('evt_t060_7', 'charge.refunded', pg_temp.charge('pi_t060_i2a', 1000, 500))),
  ('i2 buys A', pg_temp.send('evt_t060_8', 'checkout.session.completed', pg_temp.session('cs_t060_i2a', :'i2', '200', true, 'pi_t060_i2a', 1000))),
  ('i2 buys A again (dup)', pg_temp.send('evt_t060_8', 'checkout.session.completed', pg_temp.session('cs_t060_i2a', :'i2', '200', true, 'pi_t060_i2a', 1000))),
  ('i2 A succeeds again', pg_temp.send('evt_t060_9', 'checkout.session.async_payment_succeeded', pg_temp.session('cs_t060_i2a', :'i2', '200', true, 'pi_t060_i2a', 1000))),
  ('i2 spends 100', pg_temp.spend(:'i2', 100, 't060-i2-1')),
  ('i2 spends 1 (too much)', pg_temp.spend(:'i2', 1, 't060-i2-2'))
;

-- i3: pre-created recharges (one expires, one is paid asynchronously), a lost dispute after spending
insert into public.credit_recharge (user_id, credits, amount_cents, stripe_checkout_session_id)
values (:'i3', 30, 300, 'cs_t060_i3c'), (:'i3', 60, 600, 'cs_t060_i3d');
insert into step (what, outcome) values
  ('i3 C expires', pg_temp.send('evt_t060_10', 'checkout.session.expired', pg_temp.session('cs_t060_i3c', :'i3', '30', false, null, 300))),
  ('i3 D unpaid', pg_temp.send('evt_t060_11', 'checkout.session.completed', pg_temp.session('cs_t060_i3d', :'i3', '60', false, 'pi_t060_i3d', 600))),
  ('i3 D succeeds', pg_temp.send('evt_t060_12', 'checkout.session.async_payment_succeeded', pg_temp.session('cs_t060_i3d', :'i3', '60', true, 'pi_t060_i3d', 600))),
  ('i3 spends 60', pg_temp.spend(:'i3', 60, 't060-i3-1')),
  ('i3 D disputed', pg_temp.send('evt_t060_13', 'charge.dispute.created', pg_temp.dispute('pi_t060_i3d', 600, 'needs_response'))),
  ('i3 D dispute lost', pg_temp.send('evt_t060_14', 'charge.dispute.closed', pg_temp.dispute('pi_t060_i3d', 600, 'lost'))),
  ('i3 spends 1 (negative)', pg_temp.spend(:'i3', 1, 't060-i3-2')),
  -- i4: a malformed session, an ignored one, a failed payment, then a good purchase
  ('i4 bad credits', pg_temp.send('evt_t060_15', 'checkout.session.completed', pg_temp.session('cs_t060_i4x', :'i4', 'abc', true, 'pi_t060_i4x', 100))),
  ('i4 not credits', pg_temp.send('evt_t060_16', 'checkout.session.completed', pg_temp.session('cs_t060_i4y', :'i4', null, true, 'pi_t060_i4y', 100))),
  ('i4 E unpaid', pg_temp.send('evt_t060_17', 'checkout.session.completed', pg_temp.session('cs_t060_i4e', :'i4', '10', false, 'pi_t060_i4e', 100))),
  ('i4 E fails', pg_temp.send('evt_t060_18', 'checkout.session.async_payment_failed', pg_temp.session('cs_t060_i4e', :'i4', '10', false, 'pi_t060_i4e', 100))),
  ('i4 buys F', pg_temp.send('evt_t060_19', 'checkout.session.completed', pg_temp.session('cs_t060_i4f', :'i4', '25', true, 'pi_t060_i4f', 250))),
  ('i4 F partly refunded', pg_temp.send('evt_t060_20', 'charge.refunded', pg_temp.charge('pi_t060_i4f', 250, 100)))
;

select is(
  array(select format('%s=%s', what, outcome) from step order by seq),
  array[
    'i1 buys A=processed', 'i1 starts B unpaid=processed', 'i1 B succeeds=processed', 'i1 spends 30=120',
    'i1 A refunded 300=processed', 'i1 B disputed=processed', 'i1 spends 50 (too much)=CR001', 'i1 spends 20=20',
    'i1 B dispute won=processed', 'i1 replays spend 20=20',
    'i2 refund first=deferred', 'i2 buys A=processed', 'i2 buys A again (dup)=processed', 'i2 A succeeds again=processed',
    'i2 spends 100=0', 'i2 spends 1 (too much)=CR001',
    'i3 C expires=processed', 'i3 D unpaid=processed', 'i3 D succeeds=processed', 'i3 spends 60=0',
    'i3 D disputed=processed', 'i3 D dispute lost=processed', 'i3 spends 1 (negative)=CR001',
    'i4 bad credits=failed', 'i4 not credits=ignored', 'i4 E unpaid=processed', 'i4 E fails=processed',
    'i4 buys F=processed', 'i4 F partly refunded=processed'
  ],
  'every step of the sequence had the expected outcome');

select is(
  (select array_agg(format('%s/%s', b.balance, b.total_recharged) order by u.ord)
   from unnest(array[:'i1', :'i2', :'i3', :'i4']::uuid[]) with ordinality as u(id, ord)
   left join public.user_credit_balance b on b.user_id = u.id),
  array['70/150', '0/200', '-60/60', '15/25'],
  'the final balances are the hand-computed ones (i1 70, i2 0, i3 -60, i4 15)');

-- ---------------------------------------------------------------------------------------
-- The invariants (DESIGN.md section 1), over every touched user
-- ---------------------------------------------------------------------------------------
create function pg_temp.check_invariants() returns table (name text, offenders text[]) language sql as $$
  -- balance = sum(amount); a user with entries must have a balance row
  select 'balance = sum(amount)', array(
    select format('%s: balance %s, sum %s', u.user_id, b.balance, s.total)
    from pg_temp.touched u
    left join public.user_credit_balance b using (user_id)
    left join lateral (select sum(t.amount) as total, count(*) as n from public.credit_transaction t where t.user_id = u.user_id) s on true
    where (s.n > 0 or b.user_id is not null) and b.balance is distinct from coalesce(s.total, 0))
  union all
  -- total_recharged = sum of recharge entries
  select 'total_recharged = sum(recharge entries)', array(
    select format('%s: total_recharged %s, sum %s', b.user_id, b.total_recharged, s.total)
    from public.user_credit_balance b join pg_temp.touched using (user_id)
    cross join lateral (select coalesce(sum(t.amount), 0) as total from public.credit_transaction t
                        where t.user_id = b.user_id and t.type = 'recharge') s
    where b.total_recharged <> s.total)
  union all
  -- every credited recharge has exactly one recharge entry, for its credits, for its user
  select 'credited recharge has exactly one matching recharge entry', array(
    select format('%s: %s entries', r.id, count(t.id))
    from public.credit_recharge r join pg_temp.touched using (user_id)
    left join public.credit_transaction t
      on t.recharge_id = r.id and t.type = 'recharge' and t.amount = r.credits and t.user_id = r.user_id
    where r.completed_at is not null
    group by r.id
    having count(t.id) <> 1)
  union all
  -- every recharge entry has a credited recharge of the same user
  select 'recharge entry belongs to a credited recharge', array(
    select format('%s: recharge %s', t.idempotency_key, t.recharge_id)
    from public.credit_transaction t join pg_temp.touched using (user_id)
    left join public.credit_recharge r on r.id = t.recharge_id
    where t.type = 'recharge' and (r.completed_at is null or r.user_id <> t.user_id))
  union all
  -- a recharge never credited has no ledger entry at all (no refund or dispute of nothing)
  select 'uncredited recharge has no ledger entry', array(
    select format('%s (%s): %s', r.id, r.status, t.idempotency_key)
    from public.credit_recharge r join pg_temp.touched using (user_id)
    join public.credit_transaction t on t.recharge_id = r.id
    where r.completed_at is null)
  union all
  -- status and completed_at agree: credited exactly when completed or refunded
  select 'status agrees with completed_at', array(
    select format('%s: %s', r.id, r.status)
    from public.credit_recharge r join pg_temp.touched using (user_id)
    where (r.status in ('completed', 'refunded')) <> (r.completed_at is not null))
  union all
  -- refunded_credits and disputed_credits match the refund and dispute entries of each recharge
  select 'refunded/disputed credits match their entries', array(
    select format('%s: refunded %s vs %s, disputed %s vs %s', r.id, r.refunded_credits, s.refunds, r.disputed_credits, s.disputes)
    from public.credit_recharge r join pg_temp.touched using (user_id)
    cross join lateral (
      select coalesce(-sum(t.amount) filter (where t.type = 'refund'), 0) as refunds,
             coalesce(-sum(t.amount) filter (where t.type = 'dispute'), 0) as disputes
      from public.credit_transaction t where t.recharge_id = r.id) s
    where r.refunded_credits <> s.refunds or r.disputed_credits <> s.disputes)
  union all
  -- a recharge never loses more credits than it sold
  select 'no recharge loses more than it sold', array(
    select format('%s: sold %s, taken back %s', r.id, r.credits, -sum(t.amount))
    from public.credit_recharge r join pg_temp.touched using (user_id)
    join public.credit_transaction t on t.recharge_id = r.id and t.type in ('refund', 'dispute')
    group by r.id, r.credits
    having -sum(t.amount) > r.credits)
  union all
  -- balance_after chain: each entry's balance_after = the previous one + amount. All rows were
  -- written in this transaction, so cmin (the inserting command id) gives their write order.
  select 'balance_after chain is consistent', array(
    select format('%s: %s + %s <> %s', c.idempotency_key, coalesce(c.prev, 0), c.amount, c.balance_after)
    from (select t.idempotency_key, t.amount, t.balance_after,
                 lag(t.balance_after) over (partition by t.user_id order by t.cmin::text::bigint) as prev
          from public.credit_transaction t join pg_temp.touched using (user_id)) c
    where c.balance_after <> coalesce(c.prev, 0) + c.amount)
  union all
  -- the last entry's balance_after is the cached balance
  select 'last balance_after = balance', array(
    select format('%s: last %s, balance %s', b.user_id, l.balance_after, b.balance)
    from public.user_credit_balance b join pg_temp.touched using (user_id)
    cross join lateral (select t.balance_after from public.credit_transaction t where t.user_id = b.user_id
                        order by t.cmin::text::bigint desc limit 1) l
    where l.balance_after <> b.balance)
  union all
  -- spends never overdraw
  select 'no spend overdraws', array(
    select t.idempotency_key from public.credit_transaction t join pg_temp.touched using (user_id)
    where t.type = 'spend' and (t.amount >= 0 or t.balance_after < 0))
$$;

select is(c.offenders, '{}'::text[], 'invariant: ' || c.name) from pg_temp.check_invariants() c;

select is(
  array(select format('%s:%s', e.event_id, e.status)
        from credit_private.stripe_webhook_event e
        where e.event_id in (select s.event ->> 'id' from sent s) and e.status not in ('processed', 'ignored')
        order by 1),
  array['evt_t060_15:failed'], 'every event sent is settled (only the malformed one is failed; none left deferred)');

-- ---------------------------------------------------------------------------------------
-- Everything delivered again, newest first: nothing changes
-- ---------------------------------------------------------------------------------------
create temporary table before_redelivery as select pg_temp.snapshot() as s;
select is(
  array(select distinct r ->> 'duplicate'
        from (select public.handle_stripe_event(event) as r from sent
              where event ->> 'id' <> 'evt_t060_15' order by seq desc) x),
  array['true'], 'every settled event, redelivered newest first, is a duplicate');
select is(
  (select public.handle_stripe_event(event) ->> 'status' from sent where event ->> 'id' = 'evt_t060_15' limit 1),
  'failed', 'the malformed event, redelivered, fails again');
select is(pg_temp.snapshot(), (select s from before_redelivery), 'after redelivering everything, the ledger is unchanged');
select is(
  (select count(*)::int from pg_temp.check_invariants() c where c.offenders <> '{}'),
  0, 'and every invariant still holds');

select * from finish();
rollback;
