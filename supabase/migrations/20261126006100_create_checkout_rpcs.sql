-- Why: create-checkout needs two things from the database. First, who the caller is and
-- which package they picked, read AS THE CALLER so that PostgREST (not the function) verifies
-- the user's JWT and RLS decides what they may see; this works the same on hosted Supabase,
-- whatever signs its JWTs. Second, a pending recharge recorded for the session it created,
-- idempotently, so that a paid session always finds its recharge and a stuck one is visible.

create function public.get_checkout_package(package_id uuid)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_user_id uuid := (select auth.uid());
  v_package public.credit_packages;
begin
  if v_user_id is null then
    raise exception 'a signed-in user is required' using errcode = '42501';
  end if;

  select * into v_package
  from public.credit_packages p
  where p.id = get_checkout_package.package_id;

  return jsonb_build_object(
    'user_id', v_user_id,
    'package', case when v_package.id is null then null else to_jsonb(v_package) end
  );
end;
$$;

revoke execute on function public.get_checkout_package(uuid) from public, anon, authenticated, service_role;
grant execute on function public.get_checkout_package(uuid) to authenticated;

comment on function public.get_checkout_package(uuid) is
  'For create-checkout, called with the buyer''s JWT: returns {user_id: auth.uid(), package: the row or null}. Raises 42501 when the caller is not a signed-in user. Security invoker: RLS on credit_packages applies.';

create function public.record_pending_recharge(
  user_id uuid,
  checkout_session_id text,
  credits bigint,
  amount_cents bigint default 0,
  currency text default 'usd'
)
returns jsonb
language plpgsql
-- Definer: service_role may not write credit_recharge directly (nobody may); this is the one
-- audited path that records a recharge before payment.
security definer
set search_path = ''
as $$
declare
  v_recharge public.credit_recharge;
  v_created boolean;
begin
  if record_pending_recharge.user_id is null then
    raise exception 'user_id is required' using errcode = '22023';
  end if;
  if coalesce(record_pending_recharge.checkout_session_id, '') !~ '^cs_[A-Za-z0-9_]{1,250}$' then
    raise exception 'checkout_session_id must be a Stripe Checkout Session id (cs_...)' using errcode = '22023';
  end if;
  if record_pending_recharge.credits is null or record_pending_recharge.credits <= 0 then
    raise exception 'credits must be a positive integer' using errcode = '22023';
  end if;
  if record_pending_recharge.amount_cents is null or record_pending_recharge.amount_cents < 0 then
    raise exception 'amount_cents must be zero or more' using errcode = '22023';
  end if;
  if coalesce(record_pending_recharge.currency, '') !~ '^[A-Za-z]{3}$' then
    raise exception 'currency must be a three-letter ISO code' using errcode = '22023';
  end if;
  if not exists (select 1 from auth.users u where u.id = record_pending_recharge.user_id) then
    raise exception 'unknown user %', record_pending_recharge.user_id using errcode = 'CR004';
  end if;

  insert into public.credit_recharge (user_id, credits, amount_cents, currency, stripe_checkout_session_id)
  values (
    record_pending_recharge.user_id,
    record_pending_recharge.credits,
    record_pending_recharge.amount_cents,
    lower(record_pending_recharge.currency),
    record_pending_recharge.checkout_session_id
  )
  on conflict (stripe_checkout_session_id) do nothing
  returning * into v_recharge;
  v_created := found;

  if not v_created then
    -- Recorded before (a retry), or the webhook got there first: same session, same recharge.
    select * into strict v_recharge
    from public.credit_recharge r
    where r.stripe_checkout_session_id = record_pending_recharge.checkout_session_id;
    if v_recharge.user_id <> record_pending_recharge.user_id or v_recharge.credits <> record_pending_recharge.credits then
      raise exception 'checkout session % is already recorded with other values', record_pending_recharge.checkout_session_id
        using errcode = 'CR002',
              detail = format('recorded: user %s, %s credits', v_recharge.user_id, v_recharge.credits);
    end if;
  end if;

  return jsonb_build_object(
    'recharge_id', v_recharge.id,
    'status', v_recharge.status,
    'created', v_created
  );
end;
$$;

revoke execute on function public.record_pending_recharge(uuid, text, bigint, bigint, text)
  from public, anon, authenticated;
grant execute on function public.record_pending_recharge(uuid, text, bigint, bigint, text) to service_role;

comment on function public.record_pending_recharge(uuid, text, bigint, bigint, text) is
  'Records the pending recharge of a created Checkout Session, idempotent by session id: a repeat (or a session the webhook recorded first) returns the existing recharge with created = false. Errors: 22023 bad argument, CR004 unknown user, CR002 session already recorded for another user or credits.';
