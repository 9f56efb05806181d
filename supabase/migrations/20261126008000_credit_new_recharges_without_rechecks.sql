-- Why: crediting a recharge that the same transaction has just inserted repeated checks that
-- cannot find anything (issue 2's benchmark; measured in docs/benchmarks.md). A paid
-- checkout.session.completed for a new session inserts its recharge already completed, and
-- then credit_recharge locked that row again, read it back, and post_ledger_entry looked up
-- the key recharge:<new id> and locked the balance row with a separate SELECT ... FOR UPDATE
-- before updating it. None of that can change the outcome:
--   * no other transaction can see a row before its inserter commits, so there is nothing to
--     lock it against and nothing to re-read;
--   * the recharge entry's key names the recharge's new id, so no entry can carry it yet;
--   * an UPDATE takes the same row lock as SELECT ... FOR UPDATE (one heap write and WAL
--     record instead of two), and the lock order is unchanged: payment, recharge, balance.
-- Such a recharge now goes straight to the writes (post_recharge_entry with p_inserted_here);
-- every other path (an existing or pending recharge, a spend, a repair) keeps the lock and
-- the idempotency lookup, in the same order as before. The writes themselves live in one
-- function, apply_ledger_entry, used by both.

-- The writes of one ledger entry: the balance row (created on a user's first entry) and the
-- entry. Callers have already decided that the entry must be written (post_ledger_entry under
-- the balance lock, or post_recharge_entry for a recharge inserted by this transaction).
create function credit_private.apply_ledger_entry(
  p_user_id uuid,
  p_type text,
  p_amount bigint,
  p_idempotency_key text,
  p_recharge_id uuid,
  p_description text
)
returns public.credit_transaction
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_balance bigint;
  v_entry public.credit_transaction;
begin
  loop
    update public.user_credit_balance
    set balance = balance + p_amount,
        total_recharged = total_recharged + case when p_type = 'recharge' then p_amount else 0 end,
        updated_at = now()
    where user_id = p_user_id
    returning balance into v_balance;
    exit when found;
    -- The user's first entry. A concurrent first entry may create the row first: this insert
    -- then waits for it and does nothing, and the update above runs again on its row.
    insert into public.user_credit_balance (user_id) values (p_user_id)
    on conflict (user_id) do nothing;
  end loop;

  insert into public.credit_transaction
    (user_id, type, amount, balance_after, recharge_id, idempotency_key, description)
  values
    (p_user_id, p_type, p_amount, v_balance, p_recharge_id, p_idempotency_key, p_description)
  returning * into v_entry;
  return v_entry;
end;
$$;

revoke execute on function credit_private.apply_ledger_entry(uuid, text, bigint, text, uuid, text)
  from public, anon, authenticated, service_role;

comment on function credit_private.apply_ledger_entry(uuid, text, bigint, text, uuid, text) is
  'The only writer of credit_transaction and user_credit_balance: updates the balance (creating its row on a first entry) and appends the entry, without any check. Called by post_ledger_entry under the balance lock, and by post_recharge_entry for a recharge this transaction inserted.';

create or replace function credit_private.post_ledger_entry(
  p_user_id uuid,
  p_type text,
  p_amount bigint,
  p_idempotency_key text,
  p_recharge_id uuid default null,
  p_description text default null,
  out entry public.credit_transaction,
  out replayed boolean
)
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_balance public.user_credit_balance;
begin
  -- Lock the balance row first (every writer of this user queues here), creating it on the
  -- user's first entry.
  insert into public.user_credit_balance (user_id) values (p_user_id)
  on conflict (user_id) do nothing;

  select * into strict v_balance
  from public.user_credit_balance
  where user_id = p_user_id
  for update;

  select * into entry
  from public.credit_transaction
  where idempotency_key = p_idempotency_key;

  if found then
    if entry.user_id <> p_user_id or entry.type <> p_type or entry.amount <> p_amount then
      raise exception 'idempotency key % was already used with different parameters', p_idempotency_key
        using errcode = 'CR002',
              detail = format('first use: user %s, type %s, amount %s', entry.user_id, entry.type, entry.amount);
    end if;
    replayed := true;
    return;
  end if;

  if p_type = 'spend' and v_balance.balance + p_amount < 0 then
    raise exception 'insufficient credits'
      using errcode = 'CR001',
            detail = format('balance %s, requested %s', v_balance.balance, -p_amount),
            hint = 'Recharge credits before spending.';
  end if;

  entry := credit_private.apply_ledger_entry(p_user_id, p_type, p_amount, p_idempotency_key, p_recharge_id, p_description);
  replayed := false;
end;
$$;

comment on function credit_private.post_ledger_entry(uuid, text, bigint, text, uuid, text) is
  'The checked way to write the ledger. Serialises per user on the balance row; idempotent by key (replayed = true returns the first entry; a key reused with other parameters raises CR002); refuses a spend below zero with CR001; then writes through apply_ledger_entry.';

-- post_recharge_entry gains p_inserted_here; its only caller passes it explicitly.
drop function credit_private.post_recharge_entry(public.credit_recharge);
delete from credit_private.expected_object
where kind = 'function' and name = 'credit_private.post_recharge_entry(public.credit_recharge)';

create function credit_private.post_recharge_entry(p_recharge public.credit_recharge, p_inserted_here boolean)
returns public.credit_transaction
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_key text := 'recharge:' || p_recharge.id;
  v_description text := 'Stripe Checkout ' || coalesce(p_recharge.stripe_checkout_session_id, p_recharge.id::text);
begin
  if p_inserted_here then
    -- No other transaction can see this recharge yet and no entry can carry its new id.
    return credit_private.apply_ledger_entry(
      p_recharge.user_id, 'recharge', p_recharge.credits, v_key, p_recharge.id, v_description);
  end if;
  return (credit_private.post_ledger_entry(
    p_recharge.user_id, 'recharge', p_recharge.credits, v_key, p_recharge.id, v_description)).entry;
end;
$$;

revoke execute on function credit_private.post_recharge_entry(public.credit_recharge, boolean)
  from public, anon, authenticated, service_role;

comment on function credit_private.post_recharge_entry(public.credit_recharge, boolean) is
  'Posts the recharge ledger entry of a completed recharge, or returns the existing one: the key recharge:<id> makes it exactly-once. p_inserted_here = true (the recharge was inserted by this transaction) writes it without the lock and lookup, which cannot find anything then.';

-- Refunds and disputes of a payment that arrived before it, applied once it is credited.
create function credit_private.apply_deferred_payment_events(p_payment_intent_id text)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_deferred_event_id text;
begin
  -- Only a refund or dispute naming a PaymentIntent can wait for its payment.
  if p_payment_intent_id is null then
    return;
  end if;
  for v_deferred_event_id in
    select event_id
    from credit_private.stripe_webhook_event
    where status = 'deferred' and payment_intent_id = p_payment_intent_id
    order by stripe_created_at, received_at
    -- A deferred event locked by a concurrent delivery is being applied by it: it waits
    -- for this payment's lock (credited_recharge_for_payment) and applies the event after
    -- this commit. Waiting for it here instead would deadlock.
    for update skip locked
  loop
    perform credit_private.process_stripe_event(v_deferred_event_id);
  end loop;
end;
$$;

revoke execute on function credit_private.apply_deferred_payment_events(text)
  from public, anon, authenticated, service_role;

comment on function credit_private.apply_deferred_payment_events(text) is
  'Applies, oldest first, the refunds and disputes of a PaymentIntent that were deferred because they arrived before its payment was credited.';

create or replace function credit_private.credit_recharge(p_recharge_id uuid)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_recharge public.credit_recharge;
begin
  select * into strict v_recharge
  from public.credit_recharge
  where id = p_recharge_id
  for update;

  -- A paid event is the truth: money was received, so even a recharge marked failed or
  -- expired by an earlier (out-of-order) event is credited.
  if v_recharge.completed_at is null then
    update public.credit_recharge
    set status = 'completed', completed_at = now(), updated_at = now()
    where id = p_recharge_id
    returning * into v_recharge;
  end if;

  perform credit_private.post_recharge_entry(v_recharge, false);
  perform credit_private.apply_deferred_payment_events(v_recharge.stripe_payment_intent_id);
end;
$$;

create or replace function credit_private.apply_checkout_session_event(p_type text, p_session jsonb)
returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_session_id text := p_session ->> 'id';
  v_paid boolean := p_type = 'checkout.session.async_payment_succeeded'
    or (p_type = 'checkout.session.completed' and p_session ->> 'payment_status' in ('paid', 'no_payment_required'));
  v_sells_credits boolean := coalesce(p_session -> 'metadata', '{}'::jsonb) ? 'credits';
  v_recharge public.credit_recharge;
  v_inserted boolean := false;
begin
  if v_session_id is null then
    raise exception '% event has no checkout session id', p_type using errcode = 'CR003';
  end if;
  -- Before any recharge row: a refund or dispute of this payment waits until this commits.
  if p_session ->> 'payment_intent' is not null then
    perform credit_private.lock_payment(p_session ->> 'payment_intent');
  end if;

  -- The common case, a new paid session naming its buyer, is one insert; a row that exists
  -- (recorded as pending beforehand, or by an earlier event) is locked and checked instead.
  if v_sells_credits and coalesce(p_session ->> 'client_reference_id', p_session #>> '{metadata,user_id}') is not null then
    insert into public.credit_recharge
      (user_id, credits, amount_cents, currency, status, completed_at, stripe_checkout_session_id,
       stripe_payment_intent_id)
    values (
      credit_private.checkout_buyer(p_session),
      credit_private.checkout_credits(p_session),
      coalesce((p_session ->> 'amount_total')::bigint, 0),
      coalesce(lower(p_session ->> 'currency'), 'usd'),
      case when v_paid then 'completed' else 'pending' end,
      case when v_paid then now() end,
      v_session_id,
      p_session ->> 'payment_intent'
    )
    on conflict (stripe_checkout_session_id) do nothing
    returning * into v_recharge;
    v_inserted := found;
  end if;

  if v_inserted and v_paid then
    -- Inserted completed just now (see the header): credited without re-locking or re-reading.
    perform credit_private.post_recharge_entry(v_recharge, true);
    perform credit_private.apply_deferred_payment_events(v_recharge.stripe_payment_intent_id);
    return 'processed';
  end if;

  if not v_inserted then
    select * into v_recharge
    from public.credit_recharge
    where stripe_checkout_session_id = v_session_id
    for update;
    if not found then
      -- Credits but no buyer: checkout_buyer raises the reason. Without a recharge and
      -- without metadata.credits the session sold something else.
      if v_sells_credits then
        perform credit_private.checkout_buyer(p_session);
      end if;
      return 'ignored';
    end if;
    perform credit_private.check_session_matches_recharge(p_session, v_recharge);
    update public.credit_recharge
    set amount_cents = coalesce((p_session ->> 'amount_total')::bigint, amount_cents),
        currency = coalesce(lower(p_session ->> 'currency'), currency),
        stripe_payment_intent_id = coalesce(p_session ->> 'payment_intent', stripe_payment_intent_id),
        updated_at = now()
    where id = v_recharge.id
      and (amount_cents, currency, stripe_payment_intent_id) is distinct from (
        coalesce((p_session ->> 'amount_total')::bigint, amount_cents),
        coalesce(lower(p_session ->> 'currency'), currency),
        coalesce(p_session ->> 'payment_intent', stripe_payment_intent_id));
  end if;

  if v_paid then
    perform credit_private.credit_recharge(v_recharge.id);
  elsif p_type = 'checkout.session.async_payment_failed' then
    update public.credit_recharge set status = 'failed', updated_at = now()
    where id = v_recharge.id and status = 'pending';
  elsif p_type = 'checkout.session.expired' then
    update public.credit_recharge set status = 'expired', updated_at = now()
    where id = v_recharge.id and status = 'pending';
  end if;
  -- checkout.session.completed with payment_status unpaid leaves the recharge pending until
  -- async_payment_succeeded or _failed arrives.
  return 'processed';
end;
$$;

select credit_private.expect_function(f::regprocedure, false, '{}', '20261126008000_credit_new_recharges_without_rechecks')
from unnest(array[
  'credit_private.apply_ledger_entry(uuid,text,bigint,text,uuid,text)',
  'credit_private.post_recharge_entry(public.credit_recharge,boolean)',
  'credit_private.apply_deferred_payment_events(text)'
]) f;
