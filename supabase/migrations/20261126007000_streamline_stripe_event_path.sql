-- Why: the crediting RPC did more work per event than its result needs (issue 2's benchmark).
-- Profiled with perf and pg_stat_statements at 8 clients, three costs stood out; this
-- migration removes them without changing any result, error or lock order:
--   1. SQL-language functions with a SET clause are never inlined, and PostgreSQL 15 parses
--      and plans their body again on every call (28% of the CPU of a credit went there).
--      lock_payment, post_recharge_entry and proportional_credits become PL/pgSQL, whose
--      plans are cached per session. Same signatures, same results.
--   2. A new event's inbox row was written twice: inserted as received, locked again, then
--      updated to processed (a second heap tuple and new entries in every inbox index). It is
--      now inserted already marked processed (attempt 1) and applied in the same transaction;
--      only an outcome other than processed (ignored, deferred, failed) updates it. Nothing
--      else can see the row before commit, so no reader ever sees "processed" for an event
--      whose effect is not there. A concurrent delivery of the same id still waits on the
--      primary key and then takes the existing path (locked row, duplicate).
--   3. Because a failed first attempt now goes from processed (attempt 1) to failed without a
--      second attempt being counted, the failure-log trigger fires when the status becomes
--      failed as well as when a failed event fails once more.

create or replace function credit_private.lock_payment(p_payment_intent_id text)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  perform pg_catalog.pg_advisory_xact_lock(7352, pg_catalog.hashtext(p_payment_intent_id));
end;
$$;

create or replace function credit_private.post_recharge_entry(p_recharge public.credit_recharge)
returns public.credit_transaction
language plpgsql
security invoker
set search_path = ''
as $$
begin
  return (credit_private.post_ledger_entry(
    p_recharge.user_id,
    'recharge',
    p_recharge.credits,
    'recharge:' || p_recharge.id,
    p_recharge.id,
    'Stripe Checkout ' || coalesce(p_recharge.stripe_checkout_session_id, p_recharge.id::text)
  )).entry;
end;
$$;

create or replace function credit_private.proportional_credits(p_credits bigint, p_numerator bigint, p_denominator bigint)
returns bigint
language plpgsql
immutable
security invoker
set search_path = ''
as $$
begin
  if p_denominator <= 0 or p_numerator >= p_denominator then
    return p_credits;
  end if;
  return floor(p_credits::numeric * greatest(p_numerator, 0) / p_denominator)::bigint;
end;
$$;

create function credit_private.apply_and_record_stripe_event(p_event_id text, p_payload jsonb, p_first_attempt boolean)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_outcome text;
  v_message text;
  v_code text;
  v_detail text;
begin
  begin
    v_outcome := credit_private.apply_stripe_event(p_payload);
  exception when others then
    -- Not swallowed: the sub-transaction is rolled back, so no partial effect remains, and
    -- the error is stored on the inbox row and returned, so the caller answers 500 and
    -- Stripe (or a retry) delivers again.
    get stacked diagnostics v_message = message_text, v_code = returned_sqlstate, v_detail = pg_exception_detail;
    update credit_private.stripe_webhook_event
    set status = 'failed',
        attempts = attempts + (not p_first_attempt)::integer,
        last_error = v_message || coalesce(' (' || nullif(v_detail, '') || ')', ''),
        last_error_code = v_code,
        processed_at = null,
        updated_at = now()
    where event_id = p_event_id;
    return jsonb_build_object('event_id', p_event_id, 'status', 'failed', 'duplicate', false,
      'error', v_message, 'error_code', v_code);
  end;

  -- A first attempt's row was inserted already marked processed, attempt 1.
  if not (p_first_attempt and v_outcome = 'processed') then
    update credit_private.stripe_webhook_event
    set status = v_outcome,
        attempts = attempts + (not p_first_attempt)::integer,
        last_error = null,
        last_error_code = null,
        processed_at = case when v_outcome in ('processed', 'ignored') then now() end,
        updated_at = now()
    where event_id = p_event_id;
  end if;
  return jsonb_build_object('event_id', p_event_id, 'status', v_outcome, 'duplicate', false);
end;
$$;

revoke execute on function credit_private.apply_and_record_stripe_event(text, jsonb, boolean)
  from public, anon, authenticated, service_role;

comment on function credit_private.apply_and_record_stripe_event(text, jsonb, boolean) is
  'Applies an inbox event the caller holds (locked, or inserted by it as processed for a first attempt) and records the outcome on its row: processed, ignored or deferred, or failed with the error, in which case the effect is rolled back.';

create or replace function credit_private.process_stripe_event(p_event_id text)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_event credit_private.stripe_webhook_event;
begin
  select * into strict v_event
  from credit_private.stripe_webhook_event
  where event_id = p_event_id
  for update;

  if v_event.status in ('processed', 'ignored') then
    return jsonb_build_object('event_id', p_event_id, 'status', v_event.status, 'duplicate', true);
  end if;
  return credit_private.apply_and_record_stripe_event(p_event_id, v_event.payload, false);
end;
$$;

create or replace function public.handle_stripe_event(event jsonb)
returns jsonb
language plpgsql
-- Definer: the webhook's role must not be able to write the ledger or the private inbox
-- directly (the guide's RLS failure); this function is the one audited path that does.
security definer
set search_path = ''
as $$
declare
  v_event_id text := event ->> 'id';
begin
  if jsonb_typeof(event) is distinct from 'object' or coalesce(v_event_id, '') = ''
     or coalesce(event ->> 'type', '') = '' or jsonb_typeof(event #> '{data,object}') is distinct from 'object' then
    raise exception 'not a Stripe event: id, type and data.object are required' using errcode = '22023';
  end if;

  -- First delivery: stored as processed and applied in this transaction (see the header).
  insert into credit_private.stripe_webhook_event
    (event_id, type, livemode, payload, payment_intent_id, stripe_created_at, status, attempts, processed_at)
  values (
    v_event_id,
    event ->> 'type',
    coalesce((event ->> 'livemode')::boolean, false),
    event,
    event #>> '{data,object,payment_intent}',
    to_timestamp((event ->> 'created')::bigint),
    'processed',
    1,
    now()
  )
  on conflict (event_id) do nothing;
  if found then
    return credit_private.apply_and_record_stripe_event(v_event_id, event, true);
  end if;

  -- Seen before (a duplicate, a retry of a failure, or a concurrent delivery that committed
  -- first): the stored row decides, under its lock.
  return credit_private.process_stripe_event(v_event_id);
end;
$$;

drop trigger stripe_webhook_event_record_failure on credit_private.stripe_webhook_event;

create trigger stripe_webhook_event_record_failure
  after update of status, attempts on credit_private.stripe_webhook_event
  for each row
  when (new.status = 'failed' and (old.status <> 'failed' or new.attempts > old.attempts))
  execute function credit_private.record_stripe_webhook_failure();

comment on trigger stripe_webhook_event_record_failure on credit_private.stripe_webhook_event is
  'Records each failed attempt (status becomes failed, or stays failed with one more attempt) in credit_private.stripe_webhook_failure.';

select credit_private.expect_function('credit_private.apply_and_record_stripe_event(text,jsonb,boolean)', false, '{}',
  '20261126007000_streamline_stripe_event_path');
