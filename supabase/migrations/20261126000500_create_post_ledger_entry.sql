-- Why: one piece of code writes the ledger. It locks the user's balance row first, so every
-- writer for a user (webhook, spend, repair) queues on the same lock; under that lock the
-- idempotency key is checked, the balance is updated and the entry appended, so the cached
-- balance and the ledger cannot drift and a repeated key never writes twice.

create function credit_private.post_ledger_entry(
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

  update public.user_credit_balance
  set balance = balance + p_amount,
      total_recharged = total_recharged + case when p_type = 'recharge' then p_amount else 0 end,
      updated_at = now()
  where user_id = p_user_id
  returning * into v_balance;

  insert into public.credit_transaction
    (user_id, type, amount, balance_after, recharge_id, idempotency_key, description)
  values
    (p_user_id, p_type, p_amount, v_balance.balance, p_recharge_id, p_idempotency_key, p_description)
  returning * into entry;
  replayed := false;
end;
$$;

revoke execute on function credit_private.post_ledger_entry(uuid, text, bigint, text, uuid, text)
  from public, anon, authenticated, service_role;

comment on function credit_private.post_ledger_entry(uuid, text, bigint, text, uuid, text) is
  'The only writer of credit_transaction and user_credit_balance. Serialises per user on the balance row; idempotent by key (replayed = true returns the first entry; a key reused with other parameters raises CR002); refuses a spend below zero with CR001.';
