-- Why: a run every 15 minutes is 35,000 rows a year, and pg_cron's own job_run_details grows
-- by one row per job run, forever, unless someone deletes it (Supabase's own advice). A daily
-- job keeps both within the retention the settings give; open alerts, pending messages and
-- weekly reports are never deleted.

create function credit_private.clean_up_monitor_history()
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_settings credit_private.settings := credit_private.current_settings();
  v_before timestamptz := now() - v_settings.monitor_history_retention;
  v_runs bigint;
  v_alerts bigint;
  v_messages bigint;
  v_failures bigint;
  v_cron bigint := 0;
begin
  delete from credit_private.monitor_run r where r.started_at < v_before;
  get diagnostics v_runs = row_count;
  delete from credit_private.monitor_alert a where a.status = 'resolved' and a.resolved_at < v_before;
  get diagnostics v_alerts = row_count;
  delete from credit_private.monitor_outbox o where o.status = 'sent' and o.sent_at < v_before;
  get diagnostics v_messages = row_count;
  delete from credit_private.stripe_webhook_failure f where f.failed_at < v_before;
  get diagnostics v_failures = row_count;

  if pg_catalog.to_regclass('cron.job_run_details') is not null then
    delete from cron.job_run_details d where d.end_time < now() - v_settings.cron_history_retention;
    get diagnostics v_cron = row_count;
  end if;

  return jsonb_build_object('monitor_runs', v_runs, 'resolved_alerts', v_alerts, 'sent_messages', v_messages,
    'webhook_failures', v_failures, 'cron_job_run_details', v_cron);
end;
$$;

revoke execute on function credit_private.clean_up_monitor_history() from public, anon, authenticated, service_role;

comment on function credit_private.clean_up_monitor_history() is
  'What the daily payment-monitor-cleanup job calls: deletes monitor runs, resolved alerts, sent messages and recorded webhook failures older than settings.monitor_history_retention, and cron.job_run_details rows (of every job) that ended more than settings.cron_history_retention ago; returns how many of each.';
