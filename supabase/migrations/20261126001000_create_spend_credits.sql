-- Why: spending is the other write path. It must never overdraw, must debit once per
-- idempotency key however often the caller repeats it, and must stay correct with many
-- concurrent callers on one user; post_ledger_entry's per-user lock gives all three.

create function public.spend_credits(
  user_id uuid,
  amount bigint,
  idempotency_key text,
  description text default null
)
returns jsonb
language plpgsql
-- Definer: clients cannot write the ledger; the backend (service_role) spends through here.
security definer
set search_path = ''
as $$
declare
  v_result record;
begin
  if spend_credits.user_id is null then
    raise exception 'user_id is required' using errcode = '22023';
  end if;
  if spend_credits.amount is null or spend_credits.amount <= 0 then
    raise exception 'amount must be a positive integer, got %', coalesce(spend_credits.amount::text, 'null')
      using errcode = '22023';
  end if;
  if coalesce(length(spend_credits.idempotency_key), 0) not between 1 and 200 then
    raise exception 'idempotency_key must be 1 to 200 characters' using errcode = '22023';
  end if;
  if not exists (select 1 from auth.users u where u.id = spend_credits.user_id) then
    raise exception 'unknown user %', spend_credits.user_id using errcode = 'CR004';
  end if;

  select * into v_result
  from credit_private.post_ledger_entry(
    spend_credits.user_id, 'spend', -spend_credits.amount, 'spend:' || spend_credits.idempotency_key, null,
    spend_credits.description
  );
  return jsonb_build_object(
    'transaction_id', (v_result.entry).id,
    'user_id', (v_result.entry).user_id,
    'amount', -(v_result.entry).amount,
    'balance_after', (v_result.entry).balance_after,
    'replayed', v_result.replayed
  );
end;
$$;

revoke execute on function public.spend_credits(uuid, bigint, text, text) from public, anon, authenticated;
grant execute on function public.spend_credits(uuid, bigint, text, text) to service_role;

comment on function public.spend_credits(uuid, bigint, text, text) is
  'Debits credits once per idempotency key (a repeat returns the first result with replayed = true). Errors: 22023 bad argument, CR001 insufficient credits (balance would go below zero), CR002 key reused with other parameters, CR004 unknown user.';
