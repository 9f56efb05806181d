-- Why: the cached row in user_credit_balance can drift from the ledger (hand edits, data from
-- before the package, a deleted entry). The ledger is the truth, so a "balance mismatch"
-- repair rewrites balance and total_recharged to the ledger sums (and creates the missing row
-- of a user who has entries); it never writes a ledger entry, so it cannot invent credits
-- beyond what the ledger holds. balance_after of past entries is history and stays as is.
-- It locks the balance row exactly as post_ledger_entry does (insert if missing, then
-- select ... for update): every ledger writer for that user waits on the same lock, so the
-- sums read under it cannot change before the row is rewritten.

create function credit_private.recompute_balances(p_user_id uuid)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_id uuid;
  v_inserted boolean;
  v_before public.user_credit_balance;
  v_after public.user_credit_balance;
  v_totals record;
  v_changes jsonb := '[]'::jsonb;
begin
  if p_user_id is not null then
    if not exists (select 1 from auth.users u where u.id = p_user_id)
       and not exists (select 1 from public.user_credit_balance b where b.user_id = p_user_id) then
      raise exception 'unknown user %', p_user_id using errcode = 'PT404';
    end if;
    v_ids := array[p_user_id];
  else
    v_ids := array(select m.user_id from credit_private.balance_mismatches m order by m.user_id);
  end if;

  -- Users in id order; only balance rows are locked here, one per user, as a spend does.
  foreach v_id in array v_ids loop
    v_inserted := false;
    if exists (select 1 from public.credit_transaction t where t.user_id = v_id) then
      insert into public.user_credit_balance (user_id) values (v_id)
      on conflict (user_id) do nothing;
      v_inserted := found;
    end if;

    select * into v_before
    from public.user_credit_balance b
    where b.user_id = v_id
    for update;
    if not found then
      continue;
    end if;

    select * into strict v_totals from credit_private.ledger_totals(v_id);
    if not v_inserted and v_before.balance = v_totals.balance
       and v_before.total_recharged = v_totals.total_recharged then
      continue;
    end if;

    update public.user_credit_balance b
    set balance = v_totals.balance, total_recharged = v_totals.total_recharged, updated_at = now()
    where b.user_id = v_id
    returning * into v_after;

    v_changes := v_changes || jsonb_build_object(
      'target_type', 'user_credit_balance', 'target_id', v_id, 'user_id', v_id,
      'before', case when v_inserted then jsonb_build_object('balance_row', 'missing')
                else jsonb_build_object('balance', v_before.balance, 'total_recharged', v_before.total_recharged) end,
      'after', jsonb_build_object('balance', v_after.balance, 'total_recharged', v_after.total_recharged),
      'detail', format('rewrote the cached totals to the sums of %s ledger entries', v_totals.entries));
  end loop;

  return jsonb_build_object(
    'action', 'recompute_balances',
    'changed', jsonb_array_length(v_changes),
    'nothing_to_do', jsonb_array_length(v_changes) = 0,
    'changes', v_changes,
    'skipped', '[]'::jsonb
  );
end;
$$;

revoke execute on function credit_private.recompute_balances(uuid) from public, anon, authenticated, service_role;

comment on function credit_private.recompute_balances(uuid) is
  'Rewrites the cached balance and total_recharged of one user, or of every mismatched user when p_user_id is null, to the ledger sums, under the balance row lock post_ledger_entry takes; creates the missing balance row of a user with entries. Writes no ledger entry. Idempotent. Called through credit_private.run_repair.';
