-- Why: crediting a paid recharge is one step used by the webhook and by repairs alike: mark
-- the recharge completed and post its single recharge entry (idempotent by the key
-- 'recharge:<id>'), then apply any refund or dispute that arrived before the payment.

-- Why (lock_payment): a refund or dispute may arrive while its payment is being credited.
-- Both sides take a transaction-scoped lock on the PaymentIntent id, so the refund either
-- runs first (and is found deferred by the crediting) or waits and sees the payment credited.
create function credit_private.lock_payment(p_payment_intent_id text)
returns void
language sql
security invoker
set search_path = ''
as $$
  select pg_catalog.pg_advisory_xact_lock(7352, pg_catalog.hashtext(p_payment_intent_id))
$$;

revoke execute on function credit_private.lock_payment(text) from public, anon, authenticated, service_role;

comment on function credit_private.lock_payment(text) is
  'Serialises, until commit, the crediting of a payment and the refunds and disputes that refer to it (advisory lock namespace 7352 on the PaymentIntent id).';

create function credit_private.post_recharge_entry(p_recharge public.credit_recharge)
returns public.credit_transaction
language sql
security invoker
set search_path = ''
as $$
  select (credit_private.post_ledger_entry(
    p_recharge.user_id,
    'recharge',
    p_recharge.credits,
    'recharge:' || p_recharge.id,
    p_recharge.id,
    'Stripe Checkout ' || coalesce(p_recharge.stripe_checkout_session_id, p_recharge.id::text)
  )).entry
$$;

revoke execute on function credit_private.post_recharge_entry(public.credit_recharge)
  from public, anon, authenticated, service_role;

comment on function credit_private.post_recharge_entry(public.credit_recharge) is
  'Posts the recharge ledger entry of a recharge, or returns the existing one: the key recharge:<id> makes it exactly-once.';

create function credit_private.credit_recharge(p_recharge_id uuid)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_recharge public.credit_recharge;
  v_deferred_event_id text;
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

  perform credit_private.post_recharge_entry(v_recharge);

  if v_recharge.stripe_payment_intent_id is not null then
    for v_deferred_event_id in
      select event_id
      from credit_private.stripe_webhook_event
      where status = 'deferred' and payment_intent_id = v_recharge.stripe_payment_intent_id
      order by stripe_created_at, received_at
      -- A deferred event locked by a concurrent delivery is being applied by it: it waits
      -- for this payment's lock (credited_recharge_for_payment) and applies the event after
      -- this commit. Waiting for it here instead would deadlock.
      for update skip locked
    loop
      perform credit_private.process_stripe_event(v_deferred_event_id);
    end loop;
  end if;
end;
$$;

revoke execute on function credit_private.credit_recharge(uuid) from public, anon, authenticated, service_role;

comment on function credit_private.credit_recharge(uuid) is
  'Marks a recharge completed and posts its one recharge entry (exactly-once), then applies refunds and disputes deferred until this payment landed. Safe to call again: a second call changes nothing.';
