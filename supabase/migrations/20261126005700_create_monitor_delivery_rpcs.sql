-- Why: the payment-monitor edge function delivers the outbox to Slack with the service-role
-- key, and service_role may not touch the private schema. Three narrow RPCs give it exactly
-- what it needs: claim due messages under a lease (FOR UPDATE SKIP LOCKED and a random token,
-- so concurrent invocations split the work and never send one message twice), report each
-- outcome with the token (sent, or failed and retried later with backoff), and read the
-- outbox's state when there is no Slack URL to deliver to.

create function public.claim_monitor_messages(max_messages integer default 20, lease_seconds integer default 120)
returns jsonb
language plpgsql
-- Definer: the outbox lives in credit_private, which service_role may not read or write.
security definer
set search_path = ''
as $$
declare
  v_token uuid := gen_random_uuid();
  v_claimed jsonb;
begin
  if claim_monitor_messages.max_messages is null or claim_monitor_messages.max_messages not between 1 and 100 then
    raise exception 'max_messages must be between 1 and 100' using errcode = '22023';
  end if;
  if claim_monitor_messages.lease_seconds is null or claim_monitor_messages.lease_seconds not between 10 and 3600 then
    raise exception 'lease_seconds must be between 10 and 3600' using errcode = '22023';
  end if;

  with due as (
    select o.id
    from credit_private.monitor_outbox o
    where o.status = 'pending'
      and o.next_attempt_at <= now()
      and (o.claimed_until is null or o.claimed_until <= now())
    order by o.next_attempt_at, o.id
    limit claim_monitor_messages.max_messages
    for update skip locked
  ),
  claimed as (
    update credit_private.monitor_outbox o
    set claim_token = v_token,
        claimed_until = now() + make_interval(secs => claim_monitor_messages.lease_seconds),
        attempts = o.attempts + 1
    from due
    where o.id = due.id
    returning o.id, o.kind, o.title, o.body, o.attempts, o.created_at
  )
  select coalesce(jsonb_agg(jsonb_build_object(
      'id', c.id, 'claim_token', v_token, 'kind', c.kind, 'title', c.title, 'body', c.body,
      'attempts', c.attempts, 'created_at', c.created_at) order by c.id), '[]'::jsonb)
  into v_claimed
  from claimed c;
  return v_claimed;
end;
$$;

revoke execute on function public.claim_monitor_messages(integer, integer) from public, anon, authenticated;
grant execute on function public.claim_monitor_messages(integer, integer) to service_role;

comment on function public.claim_monitor_messages(integer, integer) is
  'Claims up to max_messages (1-100, default 20) pending outbox messages that are due and not claimed by another delivery, for lease_seconds (10-3600, default 120), oldest first; skips rows another transaction holds. Returns [{id, claim_token, kind, title, body, attempts, created_at}]; attempts counts this claim. Report each with public.complete_monitor_message before the lease ends.';

create function public.complete_monitor_message(
  message_id bigint,
  claim_token uuid,
  delivered boolean,
  error text default null
)
returns jsonb
language plpgsql
-- Definer: the outbox lives in credit_private, which service_role may not read or write.
security definer
set search_path = ''
as $$
declare
  v_message credit_private.monitor_outbox;
begin
  if complete_monitor_message.message_id is null or complete_monitor_message.claim_token is null
     or complete_monitor_message.delivered is null then
    raise exception 'message_id, claim_token and delivered are required' using errcode = '22023';
  end if;

  update credit_private.monitor_outbox o
  set status = case when complete_monitor_message.delivered then 'sent' else 'pending' end,
      sent_at = case when complete_monitor_message.delivered then now() end,
      claim_token = null,
      claimed_until = null,
      last_error = case when complete_monitor_message.delivered then o.last_error
                        else left(coalesce(nullif(btrim(complete_monitor_message.error), ''), 'delivery failed'), 500) end,
      -- Retried after 1, 2, 4 ... minutes, at most an hour apart.
      next_attempt_at = case when complete_monitor_message.delivered then o.next_attempt_at
                             else now() + least(interval '1 minute' * power(2, least(greatest(o.attempts - 1, 0), 10)),
                                                interval '1 hour') end
  where o.id = complete_monitor_message.message_id
    and o.claim_token = complete_monitor_message.claim_token
    and o.status = 'pending'
  returning * into v_message;

  if not found then
    -- The lease was lost (another delivery claimed it after it ran out) or it was completed.
    select * into v_message from credit_private.monitor_outbox o where o.id = complete_monitor_message.message_id;
    return jsonb_build_object('id', complete_monitor_message.message_id, 'applied', false,
      'status', v_message.status);
  end if;
  return jsonb_build_object('id', v_message.id, 'applied', true, 'status', v_message.status,
    'attempts', v_message.attempts, 'next_attempt_at',
    case when v_message.status = 'pending' then v_message.next_attempt_at end);
end;
$$;

revoke execute on function public.complete_monitor_message(bigint, uuid, boolean, text) from public, anon, authenticated;
grant execute on function public.complete_monitor_message(bigint, uuid, boolean, text) to service_role;

comment on function public.complete_monitor_message(bigint, uuid, boolean, text) is
  'Reports the delivery of a claimed message, with the claim_token it was claimed with: delivered marks it sent; otherwise it stays pending with error (at most 500 characters; never a secret) and is due again after 1, 2, 4 ... minutes (at most 1 hour). Returns {id, applied, status, attempts, next_attempt_at}; applied false (nothing changed) when the token no longer holds the message.';

create function public.get_payment_monitor_status()
returns jsonb
language sql
stable
-- Definer: the monitor's tables live in credit_private, which service_role may not read.
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'pending_messages', (select count(*) from credit_private.monitor_outbox o where o.status = 'pending'),
    'failing_messages', (select count(*) from credit_private.monitor_outbox o
                         where o.status = 'pending' and o.last_error is not null),
    'oldest_pending_at', (select min(o.created_at) from credit_private.monitor_outbox o where o.status = 'pending'),
    'open_alerts', (select count(*) from credit_private.monitor_alert a where a.status = 'open'),
    'critical_alerts', (select count(*) from credit_private.monitor_alert a
                        where a.status = 'open' and a.severity = 'critical'),
    'last_run', (select jsonb_build_object('id', r.id, 'started_at', r.started_at, 'status', r.status,
                   'summary', r.summary)
                 from credit_private.monitor_latest_runs r
                 order by r.started_at desc, r.id desc
                 limit 1)
  )
$$;

revoke execute on function public.get_payment_monitor_status() from public, anon, authenticated;
grant execute on function public.get_payment_monitor_status() to service_role;

comment on function public.get_payment_monitor_status() is
  'The monitor at a glance: {pending_messages, failing_messages (pending after a failed delivery), oldest_pending_at, open_alerts, critical_alerts, last_run: {id, started_at, status, summary}}. Changes nothing.';
