-- Why: a recharge recorded as pending when its Checkout Session was created stays pending if
-- the webhook that would settle it never arrives. Reconciliation lists the stale ones,
-- retrieves each session from Stripe and applies it through the core's own
-- credit_private.apply_checkout_session_event, under the same row locks as the webhook, so a
-- paid session is credited exactly once even when its webhook lands at the same moment.
-- Each check is remembered so that sessions that stay pending (slow bank debits, sessions
-- Stripe does not know) do not starve the others.

create table credit_private.pending_recharge_check (
  recharge_id uuid primary key references public.credit_recharge (id) on delete cascade,
  checks bigint not null default 0,
  last_checked_at timestamptz not null default now(),
  last_outcome text not null,
  last_session_status text,
  last_payment_status text,
  constraint pending_recharge_check_checks_not_negative check (checks >= 0),
  constraint pending_recharge_check_outcome_known check (last_outcome in
    ('completed', 'failed', 'expired', 'still_pending', 'already_resolved', 'session_not_found'))
);

create index pending_recharge_check_last_checked_at_idx on credit_private.pending_recharge_check (last_checked_at);

alter table credit_private.pending_recharge_check enable row level security;
revoke all on credit_private.pending_recharge_check from public, anon, authenticated, service_role;

comment on table credit_private.pending_recharge_check is
  'When reconciliation last asked Stripe about a pending recharge''s Checkout Session, how often, and what it found.';

create function public.list_stale_pending_recharges(
  older_than interval default interval '1 hour',
  max_rows integer default 100
)
returns table (
  recharge_id uuid,
  user_id uuid,
  stripe_checkout_session_id text,
  credits bigint,
  amount_cents bigint,
  currency text,
  created_at timestamptz,
  checks bigint,
  last_checked_at timestamptz
)
language plpgsql
stable
-- Definer: the check history lives in credit_private, which no API role may read.
security definer
set search_path = ''
as $$
begin
  if list_stale_pending_recharges.older_than is null or list_stale_pending_recharges.older_than < interval '0' then
    raise exception 'older_than must be zero or more' using errcode = '22023';
  end if;
  if list_stale_pending_recharges.max_rows is null or list_stale_pending_recharges.max_rows not between 1 and 1000 then
    raise exception 'max_rows must be between 1 and 1000' using errcode = '22023';
  end if;

  -- Never-checked first, then the least recently checked: every pending recharge gets its turn.
  return query
  select r.id, r.user_id, r.stripe_checkout_session_id, r.credits, r.amount_cents, r.currency, r.created_at,
         coalesce(c.checks, 0::bigint), c.last_checked_at
  from public.credit_recharge r
  left join credit_private.pending_recharge_check c on c.recharge_id = r.id
  where r.status = 'pending'
    and r.stripe_checkout_session_id is not null
    and r.created_at < now() - list_stale_pending_recharges.older_than
  order by c.last_checked_at asc nulls first, r.created_at asc
  limit list_stale_pending_recharges.max_rows;
end;
$$;

revoke execute on function public.list_stale_pending_recharges(interval, integer) from public, anon, authenticated;
grant execute on function public.list_stale_pending_recharges(interval, integer) to service_role;

comment on function public.list_stale_pending_recharges(interval, integer) is
  'Pending recharges with a Checkout Session created more than older_than ago (default 1 hour), never-checked and least recently checked first, at most max_rows (1..1000).';

-- What a retrieved Checkout Session says happened, as the checkout.session.* event type the
-- core applies; null while the outcome is still open. payment_intent may be expanded.
create function credit_private.checkout_session_outcome(p_session jsonb)
returns text
language sql
immutable
security invoker
set search_path = ''
as $$
  select case
    when p_session ->> 'status' = 'complete' and p_session ->> 'payment_status' in ('paid', 'no_payment_required')
      then 'checkout.session.completed'
    when p_session ->> 'status' = 'expired'
      then 'checkout.session.expired'
    -- An async payment (bank debit) that failed sends the PaymentIntent back to
    -- requires_payment_method; the session itself stays complete and unpaid.
    when p_session ->> 'status' = 'complete' and p_session ->> 'payment_status' = 'unpaid'
         and p_session #>> '{payment_intent,status}' in ('requires_payment_method', 'canceled')
      then 'checkout.session.async_payment_failed'
    else null
  end
$$;

revoke execute on function credit_private.checkout_session_outcome(jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.checkout_session_outcome(jsonb) is
  'Maps a retrieved Checkout Session to the checkout.session.* event type it amounts to (completed when paid, expired, async_payment_failed when its expanded PaymentIntent failed), or null while still open or processing.';

create function public.resolve_pending_recharge(
  recharge_id uuid,
  checkout_session jsonb,
  dry_run boolean default false
)
returns jsonb
language plpgsql
-- Definer: service_role may not write credit_recharge, the ledger or credit_private; this is
-- the one audited path that settles a pending recharge from a retrieved session.
security definer
set search_path = ''
as $$
declare
  v_recharge public.credit_recharge;
  v_event_type text;
  v_session jsonb := resolve_pending_recharge.checkout_session;
  v_outcome text;
  v_was_credited boolean;
begin
  if resolve_pending_recharge.recharge_id is null or resolve_pending_recharge.dry_run is null then
    raise exception 'recharge_id and dry_run are required' using errcode = '22023';
  end if;
  if v_session is not null and jsonb_typeof(v_session) is distinct from 'object' then
    raise exception 'checkout_session must be a Checkout Session object or null' using errcode = '22023';
  end if;

  -- The recharge row lock is the one the webhook takes for this session (and the one
  -- apply_checkout_session_event takes again): whoever comes second sees the first's result.
  select * into v_recharge
  from public.credit_recharge r
  where r.id = resolve_pending_recharge.recharge_id
  for update;
  if not found then
    raise exception 'unknown recharge %', resolve_pending_recharge.recharge_id using errcode = 'PT404';
  end if;
  if v_session is not null and v_session ->> 'id' is distinct from v_recharge.stripe_checkout_session_id then
    raise exception 'checkout session % is not the session of recharge % (%)', v_session ->> 'id', v_recharge.id,
      coalesce(v_recharge.stripe_checkout_session_id, 'none')
      using errcode = '22023';
  end if;

  v_was_credited := v_recharge.completed_at is not null;
  if v_recharge.status <> 'pending' then
    v_outcome := 'already_resolved';
  elsif v_session is null then
    v_outcome := 'session_not_found';
  else
    v_event_type := credit_private.checkout_session_outcome(v_session);
    v_outcome := case v_event_type
      when 'checkout.session.completed' then 'completed'
      when 'checkout.session.expired' then 'expired'
      when 'checkout.session.async_payment_failed' then 'failed'
      else 'still_pending'
    end;
  end if;

  if resolve_pending_recharge.dry_run then
    return jsonb_build_object('recharge_id', v_recharge.id, 'session_id', v_recharge.stripe_checkout_session_id,
      'outcome', v_outcome, 'status', v_recharge.status, 'applied', false, 'credited', false);
  end if;

  if v_event_type is not null then
    -- The core expects payment_intent as an id, as in webhook payloads.
    if jsonb_typeof(v_session -> 'payment_intent') = 'object' then
      v_session := jsonb_set(v_session, '{payment_intent}', v_session #> '{payment_intent,id}');
    end if;
    perform credit_private.apply_checkout_session_event(v_event_type, v_session);
    select * into strict v_recharge from public.credit_recharge r where r.id = resolve_pending_recharge.recharge_id;
  end if;

  insert into credit_private.pending_recharge_check as c
    (recharge_id, checks, last_checked_at, last_outcome, last_session_status, last_payment_status)
  values (v_recharge.id, 1, now(), v_outcome, v_session ->> 'status', v_session ->> 'payment_status')
  on conflict on constraint pending_recharge_check_pkey do update
    set checks = c.checks + 1,
        last_checked_at = excluded.last_checked_at,
        last_outcome = excluded.last_outcome,
        last_session_status = excluded.last_session_status,
        last_payment_status = excluded.last_payment_status;

  return jsonb_build_object(
    'recharge_id', v_recharge.id,
    'session_id', v_recharge.stripe_checkout_session_id,
    'outcome', v_outcome,
    'status', v_recharge.status,
    'applied', v_event_type is not null,
    'credited', not v_was_credited and v_recharge.completed_at is not null
  );
end;
$$;

revoke execute on function public.resolve_pending_recharge(uuid, jsonb, boolean) from public, anon, authenticated;
grant execute on function public.resolve_pending_recharge(uuid, jsonb, boolean) to service_role;

comment on function public.resolve_pending_recharge(uuid, jsonb, boolean) is
  'Settles a pending recharge from its Checkout Session as retrieved from Stripe (null: Stripe has no such session), through credit_private.apply_checkout_session_event under the webhook''s locks: paid -> completed and credited exactly once, expired -> expired, failed async payment -> failed, otherwise left pending. Returns {recharge_id, session_id, outcome, status, applied, credited}; dry_run reports the outcome without applying or recording anything. Errors: 22023 bad argument or session of another recharge, PT404 (HTTP 404) unknown recharge, and the core''s CR003 when the session contradicts the recharge.';
