-- Why: the guide's Monday 09:00 report, as data: what was sold, spent and taken back, how
-- fast payments became credits, how the webhook fared, what the monitor and people found and
-- repaired, what is still open, and a one-line verdict. pg_cron runs in UTC and knows no time
-- zones, so the report job runs every hour and produces the report when it is the configured
-- weekday and hour in settings.report_time_zone and that week's report does not exist yet;
-- a run missed (database down) is caught up by a later hourly run within a day.
--
-- What "time from payment to credit" measures: for each recharge credited during the week,
-- from the moment Stripe created the event that reported the payment (the earliest
-- checkout.session.completed with payment_status paid or no_payment_required, or
-- checkout.session.async_payment_succeeded, of its Checkout Session: Stripe's event.created,
-- stored as stripe_created_at) to the recharge's completed_at (when the database credited
-- it). It includes Stripe's delivery delay, failed deliveries and retries, i.e. what the
-- buyer waits. Recharges credited without such an event (a back-fill, data loaded by hand)
-- are counted as not_measured. Stripe's timestamps have whole seconds.

create function credit_private.build_weekly_report(p_week_start date, p_time_zone text default null)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_settings credit_private.settings := credit_private.current_settings();
  v_zone text := coalesce(p_time_zone, v_settings.report_time_zone);
  v_from timestamptz;
  v_to timestamptz;
  v_recharges jsonb;
  v_ledger jsonb;
  v_latency jsonb;
  v_webhooks jsonb;
  v_monitor jsonb;
  v_repairs jsonb;
  v_alerts jsonb;
  v_diagnosis jsonb;
  v_open_count bigint;
  v_repaired_count bigint;
  v_verdict text;
begin
  if p_week_start is null then
    raise exception 'week_start is required' using errcode = '22023';
  end if;
  v_from := p_week_start::timestamp at time zone v_zone;
  v_to := (p_week_start + 7)::timestamp at time zone v_zone;

  -- Recharges credited during the week. completed_at has no index; updated_at does, and a
  -- credited recharge's updated_at is never before its completed_at, so the range scan on
  -- updated_at from the week's start finds them all.
  with credited as (
    select r.credits, r.amount_cents, r.currency
    from public.credit_recharge r
    where r.updated_at >= v_from and r.completed_at >= v_from and r.completed_at < v_to
  )
  select jsonb_build_object(
    'count', count(*),
    'credits', coalesce(sum(c.credits), 0),
    'by_currency', coalesce((
      select jsonb_agg(jsonb_build_object('currency', g.currency, 'count', g.n, 'amount_cents', g.amount)
        order by g.currency)
      from (select c2.currency, count(*) as n, sum(c2.amount_cents) as amount from credited c2 group by c2.currency) g
    ), '[]'::jsonb))
  into v_recharges
  from credited c;

  select jsonb_build_object(
    'credits_spent', coalesce(-sum(t.amount) filter (where t.type = 'spend'), 0),
    'spends', count(*) filter (where t.type = 'spend'),
    'refunds', jsonb_build_object(
      'count', count(*) filter (where t.type = 'refund'),
      'credits', coalesce(-sum(t.amount) filter (where t.type = 'refund'), 0)),
    'disputes', jsonb_build_object(
      'holds', count(*) filter (where t.type = 'dispute' and t.amount < 0),
      'credits_held', coalesce(-sum(t.amount) filter (where t.type = 'dispute' and t.amount < 0), 0),
      'releases', count(*) filter (where t.type = 'dispute' and t.amount > 0),
      'credits_restored', coalesce(sum(t.amount) filter (where t.type = 'dispute' and t.amount > 0), 0)),
    'adjustments', jsonb_build_object(
      'count', count(*) filter (where t.type = 'adjustment'),
      'credits', coalesce(sum(t.amount) filter (where t.type = 'adjustment'), 0)))
  into v_ledger
  from public.credit_transaction t
  where t.created_at >= v_from and t.created_at < v_to;

  with credited as (
    select r.stripe_checkout_session_id, r.completed_at
    from public.credit_recharge r
    where r.updated_at >= v_from and r.completed_at >= v_from and r.completed_at < v_to
  ),
  -- The event that paid a session was received before it was credited, and Stripe stops
  -- redelivering after three days: a week before the period is ample.
  paid as (
    select e.payload #>> '{data,object,id}' as session_id, min(e.stripe_created_at) as paid_at
    from credit_private.stripe_webhook_event e
    where e.received_at >= v_from - interval '7 days' and e.received_at < v_to
      and e.stripe_created_at is not null
      and (e.type = 'checkout.session.async_payment_succeeded'
           or (e.type = 'checkout.session.completed'
               and e.payload #>> '{data,object,payment_status}' in ('paid', 'no_payment_required')))
    group by 1
  ),
  delays as (
    select extract(epoch from greatest(c.completed_at - p.paid_at, interval '0'))::numeric as seconds
    from credited c
      join paid p on p.session_id = c.stripe_checkout_session_id
  )
  select jsonb_build_object(
    'measured', (select count(*) from delays),
    'not_measured', (select count(*) from credited) - (select count(*) from delays),
    'median_seconds', (select round(percentile_cont(0.5) within group (order by d.seconds)::numeric, 3) from delays d),
    'p95_seconds', (select round(percentile_cont(0.95) within group (order by d.seconds)::numeric, 3) from delays d),
    'max_seconds', (select round(max(d.seconds), 3) from delays d))
  into v_latency;

  with received as (
    select e.event_id, e.status
    from credit_private.stripe_webhook_event e
    where e.received_at >= v_from and e.received_at < v_to
  ),
  retries as (
    select l.after ->> 'status' as status_after
    from credit_private.repair_log l
    where l.created_at >= v_from and l.created_at < v_to and not l.dry_run and l.action = 'retry_failed_webhooks'
  )
  select jsonb_build_object(
    'events', (select count(*) from received),
    'failed_events', (select count(*) from received r
                      where exists (select 1 from credit_private.stripe_webhook_failure f where f.event_id = r.event_id)),
    'failure_rate', (select case when count(*) = 0 then 0
                       else round(count(*) filter (where exists (
                         select 1 from credit_private.stripe_webhook_failure f where f.event_id = r.event_id))::numeric
                         / count(*), 4) end
                     from received r),
    'failed_attempts', (select count(*) from credit_private.stripe_webhook_failure f
                        where f.failed_at >= v_from and f.failed_at < v_to),
    'retries', (select count(*) from retries),
    'retries_succeeded', (select count(*) from retries r where r.status_after is distinct from 'failed'),
    'still_failing', (select count(*) from received r where r.status = 'failed'))
  into v_webhooks;

  select jsonb_build_object(
    'runs', count(*),
    'failed_runs', count(*) filter (where m.status = 'failed'),
    'paused_runs', count(*) filter (where m.status = 'paused'),
    -- Each inconsistency once, however many runs saw it (the check's windows overlap, and an
    -- unrepaired one is seen again).
    'found', coalesce((
      select jsonb_object_agg(c.category, (
        select count(distinct i.id)
        from credit_private.monitor_run m2
          cross join lateral jsonb_array_elements_text(coalesce(m2.finding_ids -> c.category, '[]'::jsonb)) as i (id)
        where m2.started_at >= v_from and m2.started_at < v_to))
      from credit_private.monitor_categories() c), '{}'::jsonb))
  into v_monitor
  from credit_private.monitor_run m
  where m.started_at >= v_from and m.started_at < v_to;

  select jsonb_build_object(
    'count', count(*),
    'by_monitor', count(*) filter (where l.actor = 'payment-monitor'),
    'by_people', count(*) filter (where l.actor <> 'payment-monitor'),
    'by_category', jsonb_build_object(
      'orphaned_recharges', count(*) filter (where l.action = 'fix_orphaned_recharges'),
      'balance_mismatches', count(*) filter (where l.action = 'recompute_balances'),
      'failed_webhooks', count(*) filter (where l.action = 'retry_failed_webhooks'),
      'installation', count(*) filter (where l.action = 'restore_installation')),
    'items', coalesce(jsonb_path_query_array(jsonb_agg(jsonb_build_object(
        'at', l.created_at, 'action', l.action, 'target_type', l.target_type, 'target_id', l.target_id,
        'user_id', l.user_id, 'actor', l.actor, 'reason', l.reason, 'detail', l.detail)
      order by l.created_at, l.id), ('$[0 to ' || greatest(v_settings.max_report_rows - 1, 0) || ']')::jsonpath), '[]'::jsonb))
  into v_repairs
  from credit_private.repair_log l
  where l.created_at >= v_from and l.created_at < v_to and not l.dry_run;

  select coalesce(jsonb_agg(jsonb_build_object(
      'fingerprint', a.fingerprint, 'severity', a.severity, 'summary', a.summary,
      'count', a.details -> 'count', 'since', a.first_seen_at)
    order by a.severity = 'critical' desc, a.first_seen_at, a.fingerprint), '[]'::jsonb)
  into v_alerts
  from credit_private.monitor_alert a
  where a.status = 'open';

  v_diagnosis := public.diagnose_credits(0) -> 'counts';
  v_open_count := coalesce((v_diagnosis ->> 'orphaned_recharges')::bigint, 0)
    + coalesce((v_diagnosis ->> 'dangling_recharge_entries')::bigint, 0)
    + coalesce((v_diagnosis ->> 'balance_mismatches')::bigint, 0)
    + coalesce((v_diagnosis ->> 'failed_webhooks')::bigint, 0)
    + coalesce((v_diagnosis ->> 'installation')::bigint, 0);
  v_repaired_count := (v_repairs ->> 'count')::bigint;

  v_verdict := case
    when v_open_count > 0 then format('Action needed: %s open problem(s) (%s); see open_problems.', v_open_count,
      credit_private.monitor_counts_text(v_diagnosis - 'stuck_recharges' - 'negative_balances'))
    when jsonb_array_length(v_alerts) > 0 then format('Action needed: %s open alert(s); see open_problems.',
      jsonb_array_length(v_alerts))
    when v_repaired_count > 0 then format('Healthy: %s recharge(s) credited; %s repair(s) made during the week, nothing left open.',
      v_recharges ->> 'count', v_repaired_count)
    else format('Healthy: %s recharge(s) credited (%s credits), no inconsistencies.', v_recharges ->> 'count',
      v_recharges ->> 'credits')
  end;

  return jsonb_build_object(
    'week', jsonb_build_object('start', p_week_start, 'end', p_week_start + 6, 'time_zone', v_zone,
      'from', v_from, 'to', v_to),
    'generated_at', now(),
    'verdict', v_verdict,
    'recharges', v_recharges,
    'credits_spent', v_ledger -> 'credits_spent',
    'spends', v_ledger -> 'spends',
    'refunds', v_ledger -> 'refunds',
    'disputes', v_ledger -> 'disputes',
    'adjustments', v_ledger -> 'adjustments',
    'payment_to_credit', v_latency,
    'webhooks', v_webhooks,
    'inconsistencies', jsonb_build_object('monitor', v_monitor, 'repairs', v_repairs),
    'open_problems', jsonb_build_object('count', v_open_count, 'diagnosis', v_diagnosis, 'alerts', v_alerts)
  );
end;
$$;

revoke execute on function credit_private.build_weekly_report(date, text) from public, anon, authenticated, service_role;

comment on function credit_private.build_weekly_report(date, text) is
  'The weekly report of the seven local days from p_week_start (midnight to midnight in p_time_zone, default settings.report_time_zone) as JSON: week; recharges credited (count, credits, by_currency: count and amount_cents); credits_spent and spends; refunds (count, credits); disputes (holds, credits_held, releases, credits_restored); adjustments; payment_to_credit (Stripe event created -> completed_at, seconds: measured, not_measured, median, p95 as continuous percentiles, max); webhooks (events received, failed_events among them, failure_rate, failed_attempts, retries made by repairs and retries_succeeded, still_failing); inconsistencies (monitor runs and the distinct inconsistencies they found per category; repairs made, by category, by monitor or people, and the items); open_problems (full diagnosis counts, open alerts); verdict (one line). Changes nothing.';

-- The last time the report was due at or before p_at, and the week it covers.
create function credit_private.weekly_report_due(
  p_at timestamptz,
  p_settings credit_private.settings,
  out due_at timestamptz,
  out week_start date
)
language plpgsql
immutable
security invoker
set search_path = ''
as $$
declare
  v_local timestamp := p_at at time zone p_settings.report_time_zone;
  v_day date;
begin
  v_day := v_local::date - ((extract(isodow from v_local)::integer - p_settings.report_weekday::integer + 7) % 7);
  if v_day + make_interval(hours => p_settings.report_hour::integer) > v_local then
    v_day := v_day - 7;
  end if;
  due_at := (v_day + make_interval(hours => p_settings.report_hour::integer)) at time zone p_settings.report_time_zone;
  week_start := v_day - 7;
end;
$$;

revoke execute on function credit_private.weekly_report_due(timestamptz, credit_private.settings)
  from public, anon, authenticated, service_role;

comment on function credit_private.weekly_report_due(timestamptz, credit_private.settings) is
  'The last moment at or before p_at that is report_weekday at report_hour:00 in report_time_zone, and the week its report covers (the seven local days before that day).';

create function credit_private.produce_weekly_report(p_week_start date default null)
returns bigint
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_settings credit_private.settings := credit_private.current_settings();
  v_week date := coalesce(p_week_start, (credit_private.weekly_report_due(now(), v_settings)).week_start);
  v_id bigint;
  v_report jsonb;
begin
  select r.id into v_id
  from credit_private.monitor_weekly_report r
  where r.week_start = v_week and r.time_zone = v_settings.report_time_zone;
  if found then
    return v_id;
  end if;

  v_report := credit_private.build_weekly_report(v_week, v_settings.report_time_zone);
  insert into credit_private.monitor_weekly_report (week_start, time_zone, period_start, period_end, report)
  values (v_week, v_settings.report_time_zone, (v_report #>> '{week,from}')::timestamptz,
    (v_report #>> '{week,to}')::timestamptz, v_report)
  on conflict on constraint monitor_weekly_report_week_unique do nothing
  returning id into v_id;
  if v_id is null then
    -- Produced meanwhile by a concurrent call: that one queued the message.
    select r.id into strict v_id
    from credit_private.monitor_weekly_report r
    where r.week_start = v_week and r.time_zone = v_settings.report_time_zone;
    return v_id;
  end if;

  perform credit_private.queue_monitor_message('weekly_report', null, v_id, null,
    format('Weekly credits report %s to %s (%s): %s', v_week, v_week + 6, v_settings.report_time_zone,
      v_report ->> 'verdict'),
    jsonb_build_object('type', 'weekly_report', 'report_id', v_id, 'report', v_report));
  return v_id;
end;
$$;

revoke execute on function credit_private.produce_weekly_report(date) from public, anon, authenticated, service_role;

comment on function credit_private.produce_weekly_report(date) is
  'Stores the weekly report of the week starting p_week_start (default: the last week whose report was due) in settings.report_time_zone and queues it for Slack; returns its id. Idempotent: a week already produced is returned as it is, not queued again.';

create function credit_private.produce_weekly_report_if_due()
returns bigint
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_settings credit_private.settings := credit_private.current_settings();
  v_due record;
begin
  select * into strict v_due from credit_private.weekly_report_due(now(), v_settings);
  -- Catch up a missed hour within a day; never produce an old week out of the blue (for
  -- instance right after installation).
  if now() - v_due.due_at >= interval '1 day' then
    return null;
  end if;
  if exists (select 1 from credit_private.monitor_weekly_report r
             where r.week_start = v_due.week_start and r.time_zone = v_settings.report_time_zone) then
    return null;
  end if;
  return credit_private.produce_weekly_report(v_due.week_start);
end;
$$;

revoke execute on function credit_private.produce_weekly_report_if_due() from public, anon, authenticated, service_role;

comment on function credit_private.produce_weekly_report_if_due() is
  'What the hourly payment-monitor-weekly-report job calls: produces the report of the week just ended when the local time in settings.report_time_zone is past report_weekday report_hour:00 by less than a day and that week''s report does not exist yet; returns its id, or null when nothing was due.';
