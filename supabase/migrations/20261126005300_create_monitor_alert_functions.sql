-- Why: the monitor turns findings into alerts in three moves, each its own small function so
-- that each can be tested and read alone: (1) what every category is and how the operator
-- set it up (repair switch, threshold); (2) how a finding is named (a stable id the monitor
-- can re-check later), shown (one line a human can act on) and ranked (worst first); (3) how
-- an alert is raised or resolved with deduplication, queuing at most one message per change
-- in the outbox. A problem therefore alerts once, again only when it changes or after the
-- reminder interval, and says so when it is over.

create function credit_private.monitor_categories()
returns table (
  category text,
  sort_order integer,
  label text,
  repair_action text,
  alerts_unrepaired boolean,
  unrepaired_severity text
)
language sql
immutable
security invoker
set search_path = ''
as $$
  select c.category, c.sort_order, c.label, c.repair_action, c.alerts_unrepaired, c.unrepaired_severity
  from (values
    -- In fix_all's order: installation, then failed events, then orphans, then balances.
    ('installation', 1, 'Installation problems', 'restore_installation', true, 'critical'),
    ('failed_webhooks', 2, 'Failed webhooks', 'retry_failed_webhooks', true, 'critical'),
    ('orphaned_recharges', 3, 'Orphaned recharges', 'fix_orphaned_recharges', true, 'critical'),
    ('balance_mismatches', 4, 'Balance mismatches', 'recompute_balances', true, 'warning'),
    -- Never repaired automatically: no payment justifies changing them.
    ('dangling_recharge_entries', 5, 'Dangling recharge entries', null, true, 'critical'),
    -- Normal in small numbers: they alert only through their threshold.
    ('stuck_recharges', 6, 'Stuck recharges', null, false, 'warning'),
    ('negative_balances', 7, 'Negative balances', null, false, 'warning')
  ) as c (category, sort_order, label, repair_action, alerts_unrepaired, unrepaired_severity)
$$;

revoke execute on function credit_private.monitor_categories() from public, anon, authenticated, service_role;

comment on function credit_private.monitor_categories() is
  'The diagnosis categories as the monitor treats them: the repair that fixes them (null: never repaired automatically), whether what is left after a run alerts as unrepaired (stuck recharges and negative balances alert only through their threshold) and that alert''s severity.';

create function credit_private.monitor_category_settings(
  p_settings credit_private.settings,
  p_category text,
  out auto_repair boolean,
  out threshold bigint
)
language sql
immutable
security invoker
set search_path = ''
as $$
  select
    case p_category
      when 'installation' then p_settings.auto_restore_installation
      when 'failed_webhooks' then p_settings.auto_retry_failed_webhooks
      when 'orphaned_recharges' then p_settings.auto_fix_orphaned_recharges
      when 'balance_mismatches' then p_settings.auto_recompute_balances
      else false
    end,
    case p_category
      when 'installation' then p_settings.alert_threshold_installation
      when 'failed_webhooks' then p_settings.alert_threshold_failed_webhooks
      when 'orphaned_recharges' then p_settings.alert_threshold_orphaned_recharges
      when 'balance_mismatches' then p_settings.alert_threshold_balance_mismatches
      when 'dangling_recharge_entries' then p_settings.alert_threshold_dangling_recharge_entries
      when 'stuck_recharges' then p_settings.alert_threshold_stuck_recharges
      when 'negative_balances' then p_settings.alert_threshold_negative_balances
    end
$$;

revoke execute on function credit_private.monitor_category_settings(credit_private.settings, text)
  from public, anon, authenticated, service_role;

comment on function credit_private.monitor_category_settings(credit_private.settings, text) is
  'For one category: whether the monitor repairs it automatically (settings.auto_*) and its alert threshold (settings.alert_threshold_*).';

create function credit_private.webhook_retry_due_at(
  p_attempts bigint,
  p_last_attempt_at timestamptz,
  p_settings credit_private.settings
)
returns timestamptz
language sql
immutable
security invoker
set search_path = ''
as $$
  select case
    when coalesce(p_attempts, 0) <= 0 then p_last_attempt_at
    else p_last_attempt_at + least(
      p_settings.webhook_retry_base_delay * power(2, least(p_attempts - 1, 30))::double precision,
      p_settings.webhook_retry_max_delay)
  end
$$;

revoke execute on function credit_private.webhook_retry_due_at(bigint, timestamptz, credit_private.settings)
  from public, anon, authenticated, service_role;

comment on function credit_private.webhook_retry_due_at(bigint, timestamptz, credit_private.settings) is
  'When an inbox event attempted p_attempts times, last at p_last_attempt_at, may be retried automatically: base * 2^(attempts-1) later, capped at settings.webhook_retry_max_delay (at once if never attempted).';

create function credit_private.monitor_finding_id(p_category text, p_finding jsonb)
returns text
language sql
immutable
security invoker
set search_path = ''
as $$
  select case p_category
    when 'orphaned_recharges' then p_finding ->> 'recharge_id'
    when 'dangling_recharge_entries' then p_finding ->> 'transaction_id'
    when 'balance_mismatches' then p_finding ->> 'user_id'
    when 'failed_webhooks' then p_finding ->> 'event_id'
    when 'stuck_recharges' then p_finding ->> 'recharge_id'
    when 'negative_balances' then p_finding ->> 'user_id'
    when 'installation' then format('%s %s: %s', p_finding ->> 'kind', p_finding ->> 'name', p_finding ->> 'problem')
  end
$$;

revoke execute on function credit_private.monitor_finding_id(text, jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.monitor_finding_id(text, jsonb) is
  'The stable id of a finding of a diagnosis report: the recharge, entry, user or event id, or "kind name: problem" for installation findings.';

create function credit_private.monitor_finding_line(p_category text, p_finding jsonb)
returns text
language sql
immutable
security invoker
set search_path = ''
as $$
  select case p_category
    when 'orphaned_recharges' then format('recharge %s: %s credits (%s %s) of user %s, credited %s, no ledger entry',
      p_finding ->> 'recharge_id', p_finding ->> 'credits', upper(p_finding ->> 'currency'),
      to_char((p_finding ->> 'amount_cents')::numeric / 100, 'FM999999999990.00'), p_finding ->> 'user_id',
      p_finding ->> 'completed_at')
    when 'dangling_recharge_entries' then format('entry %s: %s credits to user %s, but %s',
      p_finding ->> 'transaction_id', p_finding ->> 'amount', p_finding ->> 'user_id', p_finding ->> 'problem')
    when 'balance_mismatches' then format('user %s: balance %s, ledger %s; total_recharged %s, ledger %s',
      p_finding ->> 'user_id', coalesce(p_finding ->> 'cached_balance', 'missing'), p_finding ->> 'ledger_balance',
      coalesce(p_finding ->> 'cached_total_recharged', 'missing'), p_finding ->> 'ledger_total_recharged')
    when 'failed_webhooks' then format('event %s (%s): %s after %s attempt(s)%s',
      p_finding ->> 'event_id', p_finding ->> 'type', p_finding ->> 'status', p_finding ->> 'attempts',
      coalesce(format(', last error %s: %s', coalesce(p_finding ->> 'last_error_code', '?'),
        left(p_finding ->> 'last_error', 160)), ''))
    when 'stuck_recharges' then format('recharge %s: %s credits of user %s pending since %s',
      p_finding ->> 'recharge_id', p_finding ->> 'credits', p_finding ->> 'user_id', p_finding ->> 'created_at')
    when 'negative_balances' then format('user %s: balance %s (refunds and disputes took back %s)',
      p_finding ->> 'user_id', p_finding ->> 'balance', p_finding ->> 'clawed_back')
    when 'installation' then format('%s %s: %s (expected %s, actual %s)',
      p_finding ->> 'kind', p_finding ->> 'name', p_finding ->> 'problem', p_finding ->> 'expected', p_finding ->> 'actual')
  end
$$;

revoke execute on function credit_private.monitor_finding_line(text, jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.monitor_finding_line(text, jsonb) is
  'One line naming a finding''s rows and amounts, for alerts and the history.';

create function credit_private.monitor_finding_weight(p_category text, p_finding jsonb)
returns numeric
language sql
immutable
security invoker
set search_path = ''
as $$
  select coalesce(case p_category
    when 'orphaned_recharges' then (p_finding ->> 'credits')::numeric
    when 'dangling_recharge_entries' then (p_finding ->> 'amount')::numeric
    when 'balance_mismatches' then abs(coalesce((p_finding ->> 'cached_balance')::numeric, 0)
      - (p_finding ->> 'ledger_balance')::numeric)
      + abs(coalesce((p_finding ->> 'cached_total_recharged')::numeric, 0) - (p_finding ->> 'ledger_total_recharged')::numeric)
    when 'failed_webhooks' then (p_finding ->> 'attempts')::numeric
    when 'stuck_recharges' then (p_finding ->> 'credits')::numeric
    when 'negative_balances' then -(p_finding ->> 'balance')::numeric
    when 'installation' then case when (p_finding ->> 'repairable')::boolean then 0 else 1 end
  end, 0)
$$;

revoke execute on function credit_private.monitor_finding_weight(text, jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.monitor_finding_weight(text, jsonb) is
  'How bad a finding is, to list the worst first: credits at stake, the size of a balance difference, attempts of a failed event; installation problems a restore cannot fix first.';

-- The findings of a category as they are now: for the given ids (what a run found and what
-- open alerts track), each read by index; or, with p_full, the whole category (the failed
-- webhooks and the installation are always read whole: a partial index and the catalog).
create function credit_private.monitor_current_findings(p_category text, p_ids text[], p_full boolean, p_max_rows integer)
returns setof jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
begin
  case p_category
    when 'orphaned_recharges' then
      return query select to_jsonb(v) from credit_private.orphaned_recharges v
        where p_full or v.recharge_id = any (p_ids::uuid[])
        order by v.completed_at, v.recharge_id limit p_max_rows;
    when 'dangling_recharge_entries' then
      return query select to_jsonb(v) from credit_private.dangling_recharge_entries v
        where p_full or v.transaction_id = any (p_ids::uuid[])
        order by v.created_at, v.transaction_id limit p_max_rows;
    when 'balance_mismatches' then
      if p_full then
        return query select to_jsonb(v) from credit_private.balance_mismatches v order by v.user_id limit p_max_rows;
      else
        return query select to_jsonb(v) from credit_private.balance_mismatches_for(p_ids::uuid[]) v
          order by v.user_id limit p_max_rows;
      end if;
    when 'failed_webhooks' then
      return query select to_jsonb(v) from credit_private.failed_webhooks v
        order by v.received_at, v.event_id limit p_max_rows;
    when 'stuck_recharges' then
      return query select to_jsonb(v) from credit_private.stuck_recharges v
        where p_full or v.recharge_id = any (p_ids::uuid[])
        order by v.created_at, v.recharge_id limit p_max_rows;
    when 'negative_balances' then
      return query select to_jsonb(v) from credit_private.negative_balances v
        where p_full or v.user_id = any (p_ids::uuid[])
        order by v.balance, v.user_id limit p_max_rows;
    when 'installation' then
      return query select f from jsonb_array_elements(credit_private.installation_category(p_max_rows) -> 'findings') f;
    else
      raise exception 'unknown category %', p_category using errcode = '22023';
  end case;
end;
$$;

revoke execute on function credit_private.monitor_current_findings(text, text[], boolean, integer)
  from public, anon, authenticated, service_role;

comment on function credit_private.monitor_current_findings(text, text[], boolean, integer) is
  'The findings of one category as they are now, as report findings (jsonb): those among p_ids (by index), or the whole category with p_full; failed webhooks and installation problems always whole. At most p_max_rows.';

create function credit_private.queue_monitor_message(
  p_kind text,
  p_fingerprint text,
  p_report_id bigint,
  p_run_id bigint,
  p_title text,
  p_body jsonb
)
returns bigint
language sql
security invoker
set search_path = ''
as $$
  insert into credit_private.monitor_outbox (kind, fingerprint, report_id, run_id, title, body)
  values (p_kind, p_fingerprint, p_report_id, p_run_id, left(p_title, 300), p_body)
  returning id
$$;

revoke execute on function credit_private.queue_monitor_message(text, text, bigint, bigint, text, jsonb)
  from public, anon, authenticated, service_role;

comment on function credit_private.queue_monitor_message(text, text, bigint, bigint, text, jsonb) is
  'Queues one message (alert, changed, reminder, resolved or weekly_report) in the outbox for the payment-monitor function to deliver.';

create function credit_private.raise_monitor_alert(
  p_fingerprint text,
  p_kind text,
  p_category text,
  p_severity text,
  p_signature text,
  p_summary text,
  p_details jsonb,
  p_run_id bigint,
  p_run jsonb
)
returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_settings credit_private.settings := credit_private.current_settings();
  v_alert credit_private.monitor_alert;
  v_outcome text;
begin
  select * into v_alert from credit_private.monitor_alert a where a.fingerprint = p_fingerprint for update;

  if not found or v_alert.status = 'resolved' then
    insert into credit_private.monitor_alert as a
      (fingerprint, kind, category, severity, signature, summary, details, last_run_id)
    values (p_fingerprint, p_kind, p_category, p_severity, p_signature, p_summary, p_details, p_run_id)
    on conflict (fingerprint) do update
    set kind = excluded.kind, category = excluded.category, severity = excluded.severity, status = 'open',
        signature = excluded.signature, summary = excluded.summary, details = excluded.details, occurrences = 1,
        first_seen_at = now(), last_seen_at = now(), last_notified_at = now(), resolved_at = null,
        last_run_id = excluded.last_run_id
    returning * into v_alert;
    v_outcome := 'new';
  elsif v_alert.signature is distinct from p_signature then
    v_outcome := 'changed';
  elsif v_alert.last_notified_at <= now() - v_settings.alert_reminder_interval
        -- A reminder while the last message still waits in the outbox would only repeat it.
        and not exists (select 1 from credit_private.monitor_outbox o
                        where o.fingerprint = p_fingerprint and o.status = 'pending') then
    v_outcome := 'reminder';
  else
    v_outcome := 'unchanged';
  end if;

  if v_outcome <> 'new' then
    update credit_private.monitor_alert a
    set severity = p_severity, signature = p_signature, summary = p_summary, details = p_details,
        occurrences = a.occurrences + 1, last_seen_at = now(), last_run_id = p_run_id,
        last_notified_at = case when v_outcome = 'unchanged' then a.last_notified_at else now() end
    where a.fingerprint = p_fingerprint
    returning * into v_alert;
  end if;

  if v_outcome <> 'unchanged' then
    perform credit_private.queue_monitor_message(
      case v_outcome when 'new' then 'alert' else v_outcome end,
      p_fingerprint, null, p_run_id,
      case v_outcome when 'changed' then 'Changed: ' when 'reminder' then 'Still open: ' else '' end || p_summary,
      jsonb_build_object(
        'type', case v_outcome when 'new' then 'alert' else v_outcome end,
        'fingerprint', p_fingerprint,
        'alert_kind', p_kind,
        'category', p_category,
        'severity', p_severity,
        'summary', p_summary,
        'count', p_details -> 'count',
        'rows', (select coalesce(jsonb_agg(r - 'suggested_action'), '[]'::jsonb)
                 from jsonb_array_elements(jsonb_path_query_array(coalesce(p_details -> 'rows', '[]'::jsonb), '$[0 to 4]')) r),
        'more_rows', greatest(coalesce((p_details ->> 'remaining')::bigint, (p_details ->> 'count')::bigint, 0)
          - jsonb_array_length(jsonb_path_query_array(coalesce(p_details -> 'rows', '[]'::jsonb), '$[0 to 4]')), 0),
        'suggested_action', p_details -> 'suggested_action',
        'first_seen_at', v_alert.first_seen_at,
        'occurrences', v_alert.occurrences,
        'run', p_run
      ));
  end if;
  return v_outcome;
end;
$$;

revoke execute on function credit_private.raise_monitor_alert(text, text, text, text, text, text, jsonb, bigint, jsonb)
  from public, anon, authenticated, service_role;

comment on function credit_private.raise_monitor_alert(text, text, text, text, text, text, jsonb, bigint, jsonb) is
  'Raises the alert p_fingerprint with its current content (p_signature digests what it is about) and returns what happened: new (opened, or reopened after being resolved), changed (signature differs), reminder (unchanged but last queued more than settings.alert_reminder_interval ago and nothing for it still pending) or unchanged. Each outcome but unchanged queues one message with the summary, count, the worst rows (details.rows), the suggested action and the run''s counts (p_run).';

create function credit_private.resolve_monitor_alert(p_fingerprint text, p_run_id bigint, p_run jsonb)
returns boolean
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_alert credit_private.monitor_alert;
begin
  update credit_private.monitor_alert a
  set status = 'resolved', resolved_at = now(), last_run_id = p_run_id
  where a.fingerprint = p_fingerprint and a.status = 'open'
  returning * into v_alert;
  if not found then
    return false;
  end if;

  perform credit_private.queue_monitor_message('resolved', p_fingerprint, null, p_run_id,
    'Resolved: ' || v_alert.summary,
    jsonb_build_object(
      'type', 'resolved',
      'fingerprint', p_fingerprint,
      'alert_kind', v_alert.kind,
      'category', v_alert.category,
      'severity', v_alert.severity,
      'summary', v_alert.summary,
      'count', 0,
      'rows', '[]'::jsonb,
      'more_rows', 0,
      'first_seen_at', v_alert.first_seen_at,
      'resolved_at', v_alert.resolved_at,
      'occurrences', v_alert.occurrences,
      'run', p_run
    ));
  return true;
end;
$$;

revoke execute on function credit_private.resolve_monitor_alert(text, bigint, jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.resolve_monitor_alert(text, bigint, jsonb) is
  'Resolves the open alert p_fingerprint and queues a "Resolved: ..." message saying since when it was open; returns false (and queues nothing) when no such alert is open.';
