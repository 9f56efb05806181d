-- Why: a refund or a dispute takes back credits that were sold. Stripe reports refunds as a
-- cumulative amount_refunded and may deliver them repeated and out of order, so the credits
-- taken back are computed from the cumulative figure and never taken twice. Dispute policy:
-- credits are held (taken back) when the dispute opens, since Stripe withdraws the money
-- then; a won dispute (or a closed inquiry) gives them back, a lost one keeps them taken.
-- A clawback may take the balance below zero; spending is then refused until it is positive.

-- The recharge a charge or dispute belongs to, locked, if it has been credited.
create function credit_private.credited_recharge_for_payment(p_payment_intent_id text)
returns public.credit_recharge
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_recharge public.credit_recharge;
begin
  select * into v_recharge
  from public.credit_recharge
  where stripe_payment_intent_id = p_payment_intent_id and completed_at is not null
  for update;
  if found then
    return v_recharge;
  end if;
  -- The payment may be being credited at this very moment by a transaction whose rows stay
  -- invisible until it commits. Crediting holds this payment's lock (see
  -- credit_private.lock_payment), so wait for it, then look again with a fresh snapshot:
  -- otherwise the event would be deferred after the crediting looked for deferred events.
  perform credit_private.lock_payment(p_payment_intent_id);
  select * into v_recharge
  from public.credit_recharge
  where stripe_payment_intent_id = p_payment_intent_id and completed_at is not null
  for update;
  return v_recharge;
end;
$$;

revoke execute on function credit_private.credited_recharge_for_payment(text)
  from public, anon, authenticated, service_role;

comment on function credit_private.credited_recharge_for_payment(text) is
  'Locks and returns the credited recharge paid by a PaymentIntent, waiting for a crediting of that payment in progress; all-null when none is credited (the event is then deferred).';

-- credits * numerator / denominator, rounded down, in numeric so it cannot overflow.
create function credit_private.proportional_credits(p_credits bigint, p_numerator bigint, p_denominator bigint)
returns bigint
language sql
immutable
security invoker
set search_path = ''
as $$
  select case
    when p_denominator <= 0 or p_numerator >= p_denominator then p_credits
    else floor(p_credits::numeric * greatest(p_numerator, 0) / p_denominator)::bigint
  end
$$;

revoke execute on function credit_private.proportional_credits(bigint, bigint, bigint)
  from public, anon, authenticated, service_role;

comment on function credit_private.proportional_credits(bigint, bigint, bigint) is
  'The share of p_credits matching p_numerator out of p_denominator (money), rounded down; all of them when the whole amount is concerned.';

create function credit_private.apply_charge_refunded(p_charge jsonb)
returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_charge_id text := p_charge ->> 'id';
  v_amount bigint := (p_charge ->> 'amount')::bigint;
  v_refunded bigint := (p_charge ->> 'amount_refunded')::bigint;
  v_recharge public.credit_recharge;
  v_newly_refunded bigint;
  v_clawback bigint;
  v_from_hold bigint;
begin
  if v_charge_id is null or v_amount is null or v_refunded is null or p_charge ->> 'payment_intent' is null then
    raise exception 'charge.refunded event lacks id, amount, amount_refunded or payment_intent' using errcode = 'CR003';
  end if;

  v_recharge := credit_private.credited_recharge_for_payment(p_charge ->> 'payment_intent');
  if v_recharge.id is null then
    return 'deferred';
  end if;

  -- Credits newly refunded come first from what the user still holds; any rest was already
  -- taken by a dispute hold and moves from the hold to the refund, so a dispute closed in the
  -- user's favour later cannot give back credits that were refunded.
  v_newly_refunded := greatest(
    credit_private.proportional_credits(v_recharge.credits, v_refunded, v_amount) - v_recharge.refunded_credits, 0);
  v_clawback := least(v_newly_refunded,
    v_recharge.credits - v_recharge.refunded_credits - v_recharge.disputed_credits);
  v_from_hold := least(v_newly_refunded - v_clawback, v_recharge.disputed_credits);
  if v_clawback > 0 then
    perform credit_private.post_ledger_entry(
      v_recharge.user_id, 'refund', -v_clawback,
      format('refund:%s:%s', v_charge_id, v_refunded), v_recharge.id,
      format('Stripe refund of %s %s cumulative on %s', v_refunded, upper(p_charge ->> 'currency'), v_charge_id)
    );
  end if;

  update public.credit_recharge
  set refunded_cents = greatest(refunded_cents, v_refunded),
      refunded_credits = refunded_credits + v_clawback + v_from_hold,
      disputed_credits = disputed_credits - v_from_hold,
      status = case when v_refunded >= v_amount then 'refunded' else status end,
      updated_at = now()
  where id = v_recharge.id;
  return 'processed';
end;
$$;

revoke execute on function credit_private.apply_charge_refunded(jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.apply_charge_refunded(jsonb) is
  'Takes back the credits of the refunded share of a charge, from the cumulative amount_refunded: repeated or reordered events never take back twice. Deferred when the payment is not credited yet.';

create function credit_private.hold_disputed_credits(p_recharge public.credit_recharge, p_dispute jsonb)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_hold bigint;
begin
  if p_recharge.disputed_credits > 0 then
    return;
  end if;
  v_hold := least(
    credit_private.proportional_credits(p_recharge.credits, (p_dispute ->> 'amount')::bigint, p_recharge.amount_cents),
    p_recharge.credits - p_recharge.refunded_credits
  );
  if v_hold > 0 then
    perform credit_private.post_ledger_entry(
      p_recharge.user_id, 'dispute', -v_hold, format('dispute:%s:hold', p_dispute ->> 'id'), p_recharge.id,
      format('Stripe dispute %s opened', p_dispute ->> 'id')
    );
    update public.credit_recharge set disputed_credits = v_hold, updated_at = now() where id = p_recharge.id;
  end if;
end;
$$;

revoke execute on function credit_private.hold_disputed_credits(public.credit_recharge, jsonb)
  from public, anon, authenticated, service_role;

comment on function credit_private.hold_disputed_credits(public.credit_recharge, jsonb) is
  'Takes back the disputed share of a recharge''s credits once per dispute (key dispute:<id>:hold).';

create function credit_private.apply_dispute_event(p_type text, p_dispute jsonb)
returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_status text := p_dispute ->> 'status';
  v_recharge public.credit_recharge;
begin
  if p_dispute ->> 'id' is null or p_dispute ->> 'payment_intent' is null or p_dispute ->> 'amount' is null then
    raise exception '% event lacks id, amount or payment_intent', p_type using errcode = 'CR003';
  end if;

  v_recharge := credit_private.credited_recharge_for_payment(p_dispute ->> 'payment_intent');
  if v_recharge.id is null then
    return 'deferred';
  end if;

  if p_type = 'charge.dispute.created' then
    -- A close that arrived first has settled it; an open after it changes nothing.
    if v_recharge.dispute_status in ('won', 'lost', 'warning_closed') then
      return 'processed';
    end if;
    perform credit_private.hold_disputed_credits(v_recharge, p_dispute);
    v_status := coalesce(v_status, 'needs_response');
  elsif v_status = 'lost' then
    perform credit_private.hold_disputed_credits(v_recharge, p_dispute);
  elsif v_status in ('won', 'warning_closed') and v_recharge.disputed_credits > 0 then
    perform credit_private.post_ledger_entry(
      v_recharge.user_id, 'dispute', v_recharge.disputed_credits,
      format('dispute:%s:restore', p_dispute ->> 'id'), v_recharge.id,
      format('Stripe dispute %s %s: credits restored', p_dispute ->> 'id', v_status)
    );
    update public.credit_recharge set disputed_credits = 0 where id = v_recharge.id;
  end if;

  update public.credit_recharge
  set stripe_dispute_id = p_dispute ->> 'id', dispute_status = v_status, updated_at = now()
  where id = v_recharge.id;
  return 'processed';
end;
$$;

revoke execute on function credit_private.apply_dispute_event(text, jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.apply_dispute_event(text, jsonb) is
  'charge.dispute.created holds the disputed credits; charge.dispute.closed lost keeps them taken, won or warning_closed restores them. Order-independent and idempotent; deferred until the payment is credited.';
