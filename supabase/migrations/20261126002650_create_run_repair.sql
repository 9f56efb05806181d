-- Why: every repair must behave alike: one transaction, one repair at a time, a dry run that
-- reports exactly what the real run would change and then changes nothing, an actor and a
-- reason, and an audit row per change. One runner does that for every repair, so no repair
-- can forget a part. The dry run really performs the repair inside a subtransaction and rolls
-- it back, so its report is the real run's report, not an estimate.

create function credit_private.fix_all()
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_restore jsonb;
  v_retry jsonb;
  v_backfill jsonb;
  v_recompute jsonb;
begin
  -- 1. Installation first: a revoked grant or dropped policy would make the next steps fail.
  v_restore := credit_private.restore_installation();
  -- 2. Failed events next: applying a payment's own event beats back-filling its recharge.
  v_retry := credit_private.retry_failed_webhooks(null);
  -- 3. Recharges still credited without an entry.
  v_backfill := credit_private.fix_orphaned_recharges(null);
  -- 4. Balances last, once the ledger holds everything the steps above posted.
  v_recompute := credit_private.recompute_balances(null);
  return jsonb_build_object(
    'action', 'fix_all',
    'changed', (v_restore ->> 'changed')::integer + (v_retry ->> 'changed')::integer
      + (v_backfill ->> 'changed')::integer + (v_recompute ->> 'changed')::integer,
    'nothing_to_do', (v_restore ->> 'changed')::integer + (v_retry ->> 'changed')::integer
      + (v_backfill ->> 'changed')::integer + (v_recompute ->> 'changed')::integer = 0,
    'steps', jsonb_build_array(v_restore, v_retry, v_backfill, v_recompute),
    'not_repaired', 'dangling_recharge_entries, stuck_recharges and negative_balances are reported by public.diagnose_credits, never repaired automatically: no payment justifies changing them.'
  );
end;
$$;

revoke execute on function credit_private.fix_all() from public, anon, authenticated, service_role;

comment on function credit_private.fix_all() is
  'The safe repairs in order: restore_installation, retry_failed_webhooks (all), fix_orphaned_recharges (all), recompute_balances (all); returns each step''s report. Called through credit_private.run_repair.';

create function credit_private.perform_repair(p_action text, p_target text)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
begin
  case p_action
    when 'fix_orphaned_recharges' then
      return credit_private.fix_orphaned_recharges(p_target::uuid);
    when 'recompute_balances' then
      return credit_private.recompute_balances(p_target::uuid);
    when 'retry_failed_webhooks' then
      return credit_private.retry_failed_webhooks(p_target);
    when 'restore_installation' then
      return credit_private.restore_installation();
    when 'fix_all' then
      return credit_private.fix_all();
    else
      raise exception 'unknown repair %', p_action using errcode = '22023';
  end case;
end;
$$;

revoke execute on function credit_private.perform_repair(text, text) from public, anon, authenticated, service_role;

comment on function credit_private.perform_repair(text, text) is
  'Dispatches a repair by name (fix_orphaned_recharges, recompute_balances, retry_failed_webhooks, restore_installation, fix_all) with its optional target (recharge id, user id or event id; null means all).';

create function credit_private.run_repair(
  p_action text,
  p_target text,
  p_dry_run boolean,
  p_actor text,
  p_reason text
)
returns jsonb
language plpgsql
security invoker
set search_path = ''
-- For this call only: finding every mismatched balance is one hash aggregate over the whole
-- ledger (about 150 bytes per user); with the default 4MB it sorts on disk. JIT off:
-- compiling these plans costs more than running them.
set work_mem = '256MB'
set jit = off
as $$
declare
  v_run_id uuid := gen_random_uuid();
  v_db_role text := coalesce(nullif(current_setting('role', true), 'none'), session_user::text);
  v_actor text := nullif(btrim(p_actor), '');
  v_reason text := nullif(btrim(p_reason), '');
  v_report jsonb;
  v_logged integer;
begin
  if p_dry_run is null then
    raise exception 'dry_run must be true or false' using errcode = '22023';
  end if;
  if not p_dry_run and (v_actor is null or v_reason is null) then
    raise exception 'a repair that changes data needs an actor and a reason' using errcode = '22023',
      hint = 'Pass actor (who asks) and reason (why), e.g. a ticket number; or dry_run => true to only look.';
  end if;
  v_actor := coalesce(v_actor, v_db_role);
  v_reason := coalesce(v_reason, 'dry run');

  -- One repair at a time: two repairs never wait on each other's row locks.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('credit_private.run_repair', 0));

  if p_dry_run then
    begin
      v_report := credit_private.perform_repair(p_action, p_target);
      raise exception 'dry run of % rolled back', p_action using errcode = 'CR900';
    exception when sqlstate 'CR900' then
      -- Only the signal raised just above: it undoes everything the dry run did (locks
      -- included); v_report keeps what it would have done. Any other error propagates.
      null;
    end;
  else
    v_report := credit_private.perform_repair(p_action, p_target);
  end if;

  insert into credit_private.repair_log
    (run_id, requested_action, action, target_type, target_id, user_id, dry_run, actor, reason, db_role,
     before, after, detail)
  select v_run_id, p_action, s.step ->> 'action', c.change ->> 'target_type', c.change ->> 'target_id',
    (c.change ->> 'user_id')::uuid, p_dry_run, v_actor, v_reason, v_db_role,
    c.change -> 'before', c.change -> 'after', c.change ->> 'detail'
  from jsonb_array_elements(coalesce(v_report -> 'steps', jsonb_build_array(v_report))) as s (step),
    jsonb_array_elements(s.step -> 'changes') as c (change);
  get diagnostics v_logged = row_count;

  return jsonb_build_object(
    'run_id', v_run_id, 'dry_run', p_dry_run, 'actor', v_actor, 'reason', v_reason, 'logged', v_logged
  ) || v_report;
end;
$$;

revoke execute on function credit_private.run_repair(text, text, boolean, text, text) from public, anon, authenticated, service_role;

comment on function credit_private.run_repair(text, text, boolean, text, text) is
  'Runs one repair in the caller''s transaction, one repair at a time (transaction advisory lock). dry_run true performs it in a subtransaction and rolls it back: the report says exactly what would change and nothing changes. A real run needs an actor and a reason. Every change (or would-be change) gets a repair_log row with run_id, actor, reason, database role, before and after.';
