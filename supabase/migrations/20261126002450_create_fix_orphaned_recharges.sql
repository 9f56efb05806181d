-- Why: an orphaned recharge was paid (it is credited: completed_at is set) but its credits
-- never reached the ledger. The repair posts the missing entry through the same function the
-- webhook uses, credit_private.credit_recharge (and so post_recharge_entry and
-- post_ledger_entry, the one ledger writer, with the key recharge:<id>), never through a
-- second writer: a concurrent webhook for the same recharge and this repair cannot both
-- credit it. A recharge that was never credited is refused: no payment, no credits.

create function credit_private.fix_orphaned_recharges(p_recharge_id uuid)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_id uuid;
  v_recharge public.credit_recharge;
  v_key_holder public.credit_transaction;
  v_before public.user_credit_balance;
  v_after public.user_credit_balance;
  v_entry_id uuid;
  v_changes jsonb := '[]'::jsonb;
  v_skipped jsonb := '[]'::jsonb;
begin
  if p_recharge_id is not null then
    if not exists (select 1 from public.credit_recharge r where r.id = p_recharge_id) then
      raise exception 'unknown recharge %', p_recharge_id using errcode = 'PT404';
    end if;
    v_ids := array[p_recharge_id];
  else
    v_ids := array(select o.recharge_id from credit_private.orphaned_recharges o order by o.recharge_id);
  end if;

  -- Lock order as in the webhook: recharge rows first (all of them, in id order), then each
  -- user's balance row inside credit_recharge. Holding every recharge before any balance
  -- means this never waits for a recharge while holding a balance a webhook is waiting for.
  perform 1 from public.credit_recharge r where r.id = any (v_ids) order by r.id for update;

  foreach v_id in array v_ids loop
    -- New statements after the lock: they see what a concurrent webhook committed meanwhile.
    select * into strict v_recharge from public.credit_recharge r where r.id = v_id;

    if v_recharge.completed_at is null then
      v_skipped := v_skipped || jsonb_build_object(
        'target_type', 'credit_recharge', 'target_id', v_id, 'user_id', v_recharge.user_id,
        'reason', format('not credited (status %s): only its paid Stripe event may credit it', v_recharge.status));
      continue;
    end if;

    if exists (select 1 from public.credit_transaction t where t.recharge_id = v_id and t.type = 'recharge') then
      continue;
    end if;

    select * into v_key_holder from public.credit_transaction t where t.idempotency_key = 'recharge:' || v_id::text;
    if found then
      v_skipped := v_skipped || jsonb_build_object(
        'target_type', 'credit_recharge', 'target_id', v_id, 'user_id', v_recharge.user_id,
        'reason', format('needs a human: its key recharge:%s is held by transaction %s (type %s, amount %s)',
          v_id, v_key_holder.id, v_key_holder.type, v_key_holder.amount));
      continue;
    end if;

    select * into v_before from public.user_credit_balance b where b.user_id = v_recharge.user_id for update;

    perform credit_private.credit_recharge(v_id);

    select * into strict v_after from public.user_credit_balance b where b.user_id = v_recharge.user_id;
    select t.id into strict v_entry_id
    from public.credit_transaction t
    where t.recharge_id = v_id and t.type = 'recharge';

    v_changes := v_changes || jsonb_build_object(
      'target_type', 'credit_recharge', 'target_id', v_id, 'user_id', v_recharge.user_id,
      'before', jsonb_build_object('recharge_entry', null, 'balance', v_before.balance,
        'total_recharged', v_before.total_recharged),
      'after', jsonb_build_object('recharge_entry', v_entry_id, 'balance', v_after.balance,
        'total_recharged', v_after.total_recharged),
      'detail', format('posted the recharge entry of %s credits (status %s, session %s)', v_recharge.credits,
        v_recharge.status, coalesce(v_recharge.stripe_checkout_session_id, 'none')));
  end loop;

  return jsonb_build_object(
    'action', 'fix_orphaned_recharges',
    'changed', jsonb_array_length(v_changes),
    'nothing_to_do', jsonb_array_length(v_changes) = 0,
    'changes', v_changes,
    'skipped', v_skipped
  );
end;
$$;

revoke execute on function credit_private.fix_orphaned_recharges(uuid) from public, anon, authenticated, service_role;

comment on function credit_private.fix_orphaned_recharges(uuid) is
  'Posts the missing recharge entry of one credited recharge, or of every orphaned recharge when p_recharge_id is null, through credit_private.credit_recharge (exactly-once by key recharge:<id>). Skips, and says why, a recharge that was never credited or whose key another entry holds. Idempotent: a second run changes nothing. Called through credit_private.run_repair.';
