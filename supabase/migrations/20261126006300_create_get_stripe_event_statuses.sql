-- Why: reconciliation lists hundreds of Stripe events per run and must feed only those the
-- inbox has not settled. Asking one RPC for all their inbox statuses at once keeps a run to
-- a few round trips; the events themselves are then fed through public.handle_stripe_event,
-- the webhook's own path, so crediting stays exactly-once with live deliveries.

create function public.get_stripe_event_statuses(event_ids text[])
returns jsonb
language plpgsql
stable
-- Definer: the inbox lives in credit_private, which no API role may read.
security definer
set search_path = ''
as $$
begin
  if get_stripe_event_statuses.event_ids is null then
    raise exception 'event_ids is required' using errcode = '22023';
  end if;
  if cardinality(get_stripe_event_statuses.event_ids) > 5000 then
    raise exception 'at most 5000 event ids per call' using errcode = '22023';
  end if;

  return coalesce((
    select jsonb_object_agg(e.event_id, e.status)
    from credit_private.stripe_webhook_event e
    where e.event_id = any (get_stripe_event_statuses.event_ids)
  ), '{}'::jsonb);
end;
$$;

revoke execute on function public.get_stripe_event_statuses(text[]) from public, anon, authenticated;
grant execute on function public.get_stripe_event_statuses(text[]) to service_role;

comment on function public.get_stripe_event_statuses(text[]) is
  'Inbox status (received, processed, failed, ignored, deferred) of each given Stripe event id that the inbox holds, as {event_id: status}; ids not in the inbox are absent. At most 5000 ids.';
