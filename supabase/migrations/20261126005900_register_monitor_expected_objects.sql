-- Why: the monitor's tables, views and functions are part of the installation like any core
-- object: a history table opened to authenticated, a delivery RPC opened to anon or a private
-- function that lost its pinned search_path must show up in the installation check and be
-- restored. (Its cron jobs are registered by credit_private.setup_payment_monitor_schedule.)

select credit_private.expect_table(t, '{}', '20261126005900_register_monitor_expected_objects')
from unnest(array[
  'credit_private.monitor_run', 'credit_private.monitor_alert', 'credit_private.monitor_outbox',
  'credit_private.monitor_weekly_report', 'credit_private.stripe_webhook_failure'
]::regclass[]) as t;

select credit_private.expect_view(v, '{}', '20261126005900_register_monitor_expected_objects')
from unnest(array[
  'credit_private.monitor_latest_runs', 'credit_private.monitor_open_alerts', 'credit_private.monitor_pending_messages'
]::regclass[]) as v;

-- The delivery RPCs: SECURITY DEFINER, for the payment-monitor function (service_role) only.
select credit_private.expect_function(f, true, '{service_role}', '20261126005900_register_monitor_expected_objects')
from unnest(array[
  'public.claim_monitor_messages(integer,integer)',
  'public.complete_monitor_message(bigint,uuid,boolean,text)',
  'public.get_payment_monitor_status()'
]::regprocedure[]) as f;

-- The internals: SECURITY INVOKER, run by pg_cron or in the SQL editor as postgres, by no API role.
select credit_private.expect_function(f, false, '{}', '20261126005900_register_monitor_expected_objects')
from unnest(array[
  'credit_private.record_stripe_webhook_failure()',
  'credit_private.monitor_counts_text(jsonb)',
  'credit_private.monitor_categories()',
  'credit_private.monitor_category_settings(credit_private.settings,text)',
  'credit_private.webhook_retry_due_at(bigint,timestamptz,credit_private.settings)',
  'credit_private.monitor_finding_id(text,jsonb)',
  'credit_private.monitor_finding_line(text,jsonb)',
  'credit_private.monitor_finding_weight(text,jsonb)',
  'credit_private.monitor_current_findings(text,text[],boolean,integer)',
  'credit_private.queue_monitor_message(text,text,bigint,bigint,text,jsonb)',
  'credit_private.raise_monitor_alert(text,text,text,text,text,text,jsonb,bigint,jsonb)',
  'credit_private.resolve_monitor_alert(text,bigint,jsonb)',
  'credit_private.monitor_repair(bigint,text,text,text)',
  'credit_private.monitor_repair_targets(text,jsonb)',
  'credit_private.monitor_remaining_reason(text,jsonb,credit_private.settings,jsonb)',
  'credit_private.monitor_remaining(credit_private.settings,jsonb,jsonb)',
  'credit_private.monitor_update_alerts(bigint,credit_private.settings,boolean,jsonb,jsonb,jsonb,jsonb)',
  'credit_private.run_monitor(boolean)',
  'credit_private.build_weekly_report(date,text)',
  'credit_private.weekly_report_due(timestamptz,credit_private.settings)',
  'credit_private.produce_weekly_report(date)',
  'credit_private.produce_weekly_report_if_due()',
  'credit_private.clean_up_monitor_history()',
  'credit_private.payment_monitor_jobs()',
  'credit_private.vault_secrets_present(text[])',
  'credit_private.setup_payment_monitor_schedule()',
  'credit_private.unschedule_payment_monitor()'
]::regprocedure[]) as f;
