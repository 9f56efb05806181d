-- Why: after a bug fix, or once the missing user or payment exists, a stored event that
-- failed (or waits deferred) must be re-run from its stored payload without asking Stripe
-- to resend it. It goes through credit_private.process_stripe_event, the path the webhook
-- uses, under the inbox row's lock: a processed or ignored event is never applied twice.

create function public.replay_stripe_event(event_id text)
returns jsonb
language plpgsql
-- Definer: the inbox and the ledger may not be written by any API role; this is the one
-- audited path that re-runs a stored event.
security definer
set search_path = ''
as $$
declare
  v_previous text;
  v_result jsonb;
begin
  if coalesce(replay_stripe_event.event_id, '') = '' then
    raise exception 'event_id is required' using errcode = '22023';
  end if;

  select e.status into v_previous
  from credit_private.stripe_webhook_event e
  where e.event_id = replay_stripe_event.event_id;
  if not found then
    raise exception 'event % is not in the inbox', replay_stripe_event.event_id
      using errcode = 'PT404', hint = 'Only stored events can be replayed; reconcile with Stripe to fetch missed ones.';
  end if;

  -- process_stripe_event locks the row and re-checks the status under the lock, so a
  -- concurrent delivery or replay that settles it first turns this one into a no-op.
  v_result := credit_private.process_stripe_event(replay_stripe_event.event_id);
  return v_result || jsonb_build_object(
    'previous_status', v_previous,
    'replayed', not coalesce((v_result ->> 'duplicate')::boolean, false)
  );
end;
$$;

revoke execute on function public.replay_stripe_event(text) from public, anon, authenticated;
grant execute on function public.replay_stripe_event(text) to service_role;

comment on function public.replay_stripe_event(text) is
  'Re-runs a stored inbox event through credit_private.process_stripe_event: a failed, deferred or received one is applied again; a processed or ignored one is left as is (duplicate = true, replayed = false). Returns {event_id, status, duplicate, replayed, previous_status, error?, error_code?}. PT404 (HTTP 404) when the inbox has no such event.';
