-- Why: a Checkout Session event names the buyer and the credits in its metadata. Malformed
-- metadata must be refused loudly (stored as failed, never credited), and every session
-- event, in any order and any number of times, must leave one recharge in the right state.

create function credit_private.checkout_buyer(p_session jsonb)
returns uuid
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_reference text := coalesce(p_session ->> 'client_reference_id', p_session #>> '{metadata,user_id}');
begin
  if v_reference is null then
    raise exception 'checkout session % names no user (client_reference_id or metadata.user_id)', p_session ->> 'id'
      using errcode = 'CR003';
  end if;
  if v_reference !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    raise exception 'checkout session % names user "%", which is not a uuid', p_session ->> 'id', v_reference
      using errcode = 'CR003';
  end if;
  if not exists (select 1 from auth.users where id = v_reference::uuid) then
    raise exception 'checkout session % names unknown user %', p_session ->> 'id', v_reference
      using errcode = 'CR003';
  end if;
  return v_reference::uuid;
end;
$$;

revoke execute on function credit_private.checkout_buyer(jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.checkout_buyer(jsonb) is
  'The buyer of a Checkout Session: client_reference_id, else metadata.user_id; raises CR003 unless it is the uuid of an existing auth user.';

create function credit_private.checkout_credits(p_session jsonb)
returns bigint
language plpgsql
immutable
security invoker
set search_path = ''
as $$
declare
  v_credits text := p_session #>> '{metadata,credits}';
begin
  if v_credits is null or v_credits !~ '^[1-9][0-9]{0,17}$' then
    raise exception 'checkout session % has metadata.credits "%", not a positive integer', p_session ->> 'id',
      coalesce(v_credits, '(missing)')
      using errcode = 'CR003';
  end if;
  return v_credits::bigint;
end;
$$;

revoke execute on function credit_private.checkout_credits(jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.checkout_credits(jsonb) is
  'The credits bought by a Checkout Session (metadata.credits); raises CR003 unless a positive integer.';

create function credit_private.check_session_matches_recharge(p_session jsonb, p_recharge public.credit_recharge)
returns void
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  -- A recharge recorded beforehand is authoritative; a session that disagrees with it is refused.
  if coalesce(p_session ->> 'client_reference_id', p_session #>> '{metadata,user_id}') is not null
     and credit_private.checkout_buyer(p_session) <> p_recharge.user_id then
    raise exception 'checkout session % names user %, but its recharge belongs to %', p_session ->> 'id',
      credit_private.checkout_buyer(p_session), p_recharge.user_id
      using errcode = 'CR003';
  end if;
  if p_session #>> '{metadata,credits}' is not null
     and credit_private.checkout_credits(p_session) <> p_recharge.credits then
    raise exception 'checkout session % sells % credits, but its recharge has %', p_session ->> 'id',
      p_session #>> '{metadata,credits}', p_recharge.credits
      using errcode = 'CR003';
  end if;
end;
$$;

revoke execute on function credit_private.check_session_matches_recharge(jsonb, public.credit_recharge)
  from public, anon, authenticated, service_role;

comment on function credit_private.check_session_matches_recharge(jsonb, public.credit_recharge) is
  'Raises CR003 when a Checkout Session names another buyer or another number of credits than its recorded recharge.';

create function credit_private.apply_checkout_session_event(p_type text, p_session jsonb)
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

revoke execute on function credit_private.apply_checkout_session_event(text, jsonb)
  from public, anon, authenticated, service_role;

comment on function credit_private.apply_checkout_session_event(text, jsonb) is
  'Applies checkout.session.completed / async_payment_succeeded / async_payment_failed / expired to the session''s one recharge: paid credits it exactly once, unpaid keeps it pending, failed and expired close a pending one. Returns processed or ignored (not a credit purchase).';
