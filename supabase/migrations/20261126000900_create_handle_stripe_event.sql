-- Why: the webhook must record an event and apply its effect in ONE transaction, exactly
-- once, whatever Stripe does (duplicates, concurrent deliveries, any order). The inbox row
-- is locked for the whole application, so concurrent deliveries of one event queue and the
-- later ones see it processed. A failure is kept on the inbox row, never lost.

create function credit_private.apply_stripe_event(p_event jsonb)
returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_type text := p_event ->> 'type';
  v_object jsonb := p_event #> '{data,object}';
begin
  case
    when v_type in ('checkout.session.completed', 'checkout.session.async_payment_succeeded',
                    'checkout.session.async_payment_failed', 'checkout.session.expired') then
      return credit_private.apply_checkout_session_event(v_type, v_object);
    when v_type = 'charge.refunded' then
      return credit_private.apply_charge_refunded(v_object);
    when v_type in ('charge.dispute.created', 'charge.dispute.closed') then
      return credit_private.apply_dispute_event(v_type, v_object);
    else
      return 'ignored';
  end case;
end;
$$;

revoke execute on function credit_private.apply_stripe_event(jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.apply_stripe_event(jsonb) is
  'Dispatches a Stripe event to its handler; returns processed, deferred or ignored (types the package does not handle).';

create function credit_private.process_stripe_event(p_event_id text)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_event credit_private.stripe_webhook_event;
  v_outcome text;
  v_message text;
  v_code text;
  v_detail text;
begin
  select * into strict v_event
  from credit_private.stripe_webhook_event
  where event_id = p_event_id
  for update;

  if v_event.status in ('processed', 'ignored') then
    return jsonb_build_object('event_id', p_event_id, 'status', v_event.status, 'duplicate', true);
  end if;

  begin
    v_outcome := credit_private.apply_stripe_event(v_event.payload);
  exception when others then
    -- Not swallowed: the sub-transaction is rolled back, so no partial effect remains, and
    -- the error is stored on the inbox row and returned, so the caller answers 500 and
    -- Stripe (or a retry) delivers again.
    get stacked diagnostics v_message = message_text, v_code = returned_sqlstate, v_detail = pg_exception_detail;
    update credit_private.stripe_webhook_event
    set status = 'failed',
        attempts = attempts + 1,
        last_error = v_message || coalesce(' (' || nullif(v_detail, '') || ')', ''),
        last_error_code = v_code,
        updated_at = now()
    where event_id = p_event_id;
    return jsonb_build_object('event_id', p_event_id, 'status', 'failed', 'duplicate', false,
      'error', v_message, 'error_code', v_code);
  end;

  update credit_private.stripe_webhook_event
  set status = v_outcome,
      attempts = attempts + 1,
      last_error = null,
      last_error_code = null,
      processed_at = case when v_outcome in ('processed', 'ignored') then now() end,
      updated_at = now()
  where event_id = p_event_id;
  return jsonb_build_object('event_id', p_event_id, 'status', v_outcome, 'duplicate', false);
end;
$$;

revoke execute on function credit_private.process_stripe_event(text) from public, anon, authenticated, service_role;

comment on function credit_private.process_stripe_event(text) is
  'Applies a stored inbox event under its row lock unless already processed or ignored; records the outcome, or the error as failed. Shared by the webhook, retries and replays.';

create function public.handle_stripe_event(event jsonb)
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

  insert into credit_private.stripe_webhook_event
    (event_id, type, livemode, payload, payment_intent_id, stripe_created_at)
  values (
    v_event_id,
    event ->> 'type',
    coalesce((event ->> 'livemode')::boolean, false),
    event,
    event #>> '{data,object,payment_intent}',
    to_timestamp((event ->> 'created')::bigint)
  )
  on conflict (event_id) do nothing;

  return credit_private.process_stripe_event(v_event_id);
end;
$$;

revoke execute on function public.handle_stripe_event(jsonb) from public, anon, authenticated;
grant execute on function public.handle_stripe_event(jsonb) to service_role;

comment on function public.handle_stripe_event(jsonb) is
  'Records a verified Stripe event in the inbox and applies it in the same transaction, exactly once per event id. Returns {event_id, status, duplicate, error?}; status failed means stored for retry.';
