-- Why: a delivery that failed (a permission error, a bug since fixed, an event that arrived
-- before its user existed) is kept in the inbox with its verified payload. Retrying it goes
-- through credit_private.process_stripe_event, the webhook's own path, under the inbox row
-- lock: an event processed meanwhile by a redelivery is seen as done, never applied twice.

create function credit_private.retry_failed_webhooks(p_event_id text)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_settings credit_private.settings := credit_private.current_settings();
  v_ids text[];
  v_id text;
  v_before credit_private.stripe_webhook_event;
  v_after credit_private.stripe_webhook_event;
  v_result jsonb;
  v_changes jsonb := '[]'::jsonb;
  v_skipped jsonb := '[]'::jsonb;
begin
  if p_event_id is not null then
    if not exists (select 1 from credit_private.stripe_webhook_event e where e.event_id = p_event_id) then
      raise exception 'unknown Stripe event %', p_event_id using errcode = 'PT404';
    end if;
    v_ids := array[p_event_id];
  else
    -- What the diagnosis names as failed webhooks: failed events, and events received but
    -- not processed for longer than settings.failed_webhook_age. Deferred events apply by
    -- themselves when their payment is credited; events that fail the same way every time
    -- (settings.retry_skip_error_codes) wait for a human.
    v_ids := array(
      select e.event_id
      from credit_private.stripe_webhook_event e
      where e.status in ('received', 'failed')
        and (e.status = 'failed' or e.received_at < now() - v_settings.failed_webhook_age)
        and not (e.status = 'failed' and coalesce(e.last_error_code = any (v_settings.retry_skip_error_codes), false))
      order by e.received_at, e.event_id
    );
    select coalesce(jsonb_agg(jsonb_build_object(
        'target_type', 'stripe_webhook_event', 'target_id', e.event_id, 'user_id', null,
        'reason', format('needs a human (error %s: %s); retry it by its id once the cause is fixed',
          e.last_error_code, e.last_error)) order by e.event_id), '[]')
    into v_skipped
    from credit_private.stripe_webhook_event e
    where e.status = 'failed' and e.last_error_code = any (v_settings.retry_skip_error_codes);
  end if;

  -- The inbox rows first (all of them, in id order), as each delivery takes its own row
  -- first; then they are applied in the order they were received.
  perform 1 from credit_private.stripe_webhook_event e where e.event_id = any (v_ids) order by e.event_id for update;

  foreach v_id in array v_ids loop
    select * into strict v_before from credit_private.stripe_webhook_event e where e.event_id = v_id;
    if v_before.status in ('processed', 'ignored') then
      continue;
    end if;

    v_result := credit_private.process_stripe_event(v_id);

    select * into strict v_after from credit_private.stripe_webhook_event e where e.event_id = v_id;
    v_changes := v_changes || jsonb_build_object(
      'target_type', 'stripe_webhook_event', 'target_id', v_id, 'user_id', null,
      'before', jsonb_build_object('status', v_before.status, 'attempts', v_before.attempts,
        'last_error', v_before.last_error, 'last_error_code', v_before.last_error_code),
      'after', jsonb_build_object('status', v_after.status, 'attempts', v_after.attempts,
        'last_error', v_after.last_error, 'last_error_code', v_after.last_error_code),
      'detail', format('%s event retried from its stored payload: %s', v_before.type, v_result ->> 'status'));
  end loop;

  return jsonb_build_object(
    'action', 'retry_failed_webhooks',
    'changed', jsonb_array_length(v_changes),
    'nothing_to_do', jsonb_array_length(v_changes) = 0,
    'still_failing', (select count(*) from jsonb_array_elements(v_changes) c where c #>> '{after,status}' = 'failed'),
    'changes', v_changes,
    'skipped', v_skipped
  );
end;
$$;

revoke execute on function credit_private.retry_failed_webhooks(text) from public, anon, authenticated, service_role;

comment on function credit_private.retry_failed_webhooks(text) is
  'Re-applies one stored Stripe event (any unfinished status), or, when p_event_id is null, every failed event and every event received but unprocessed for longer than settings.failed_webhook_age, through credit_private.process_stripe_event: exactly-once, a success or a new failure is recorded on the inbox row. Retrying all skips failed events whose SQLSTATE is in settings.retry_skip_error_codes (listed as skipped). Called through credit_private.run_repair.';
