-- Why: the 15-minute monitor decides on its own what to repair, when to retry a failed
-- webhook, when to alert and when to send the weekly report. Each of those is an operator
-- decision, so it lives in the one settings row with the diagnosis thresholds: typed, checked,
-- with a documented default, changeable with `update credit_private.settings set ...` and no
-- migration. The safe repairs (back-fill, recompute, retry) are on by default, as the guide's
-- monitor does; restoring the installation is off by default, because undoing a grant or a
-- policy someone changed on purpose should be a human's call (the monitor alerts instead).

-- Column checks, not a separate constraint: the table has one row, and a constraint added
-- with the column is checked as the column is filled.
alter table credit_private.settings
  add column monitor_enabled boolean not null default true,
  add column auto_fix_orphaned_recharges boolean not null default true,
  add column auto_recompute_balances boolean not null default true,
  add column auto_retry_failed_webhooks boolean not null default true,
  add column auto_restore_installation boolean not null default false,
  add column webhook_retry_base_delay interval not null default '5 minutes'
    constraint settings_webhook_retry_base_delay_positive check (webhook_retry_base_delay > interval '0'),
  add column webhook_retry_max_delay interval not null default '6 hours'
    constraint settings_webhook_retry_max_delay_positive check (webhook_retry_max_delay > interval '0'),
  add column webhook_retry_max_attempts bigint not null default 10
    constraint settings_webhook_retry_max_attempts_in_range check (webhook_retry_max_attempts between 1 and 1000),
  add column monitor_repair_batch bigint not null default 500
    constraint settings_monitor_repair_batch_in_range check (monitor_repair_batch between 1 and 100000),
  add column alert_threshold_orphaned_recharges bigint not null default 3
    constraint settings_alert_threshold_orphaned_recharges_not_negative check (alert_threshold_orphaned_recharges >= 0),
  add column alert_threshold_dangling_recharge_entries bigint not null default 1
    constraint settings_alert_threshold_dangling_recharge_entries_not_negative
      check (alert_threshold_dangling_recharge_entries >= 0),
  add column alert_threshold_balance_mismatches bigint not null default 3
    constraint settings_alert_threshold_balance_mismatches_not_negative check (alert_threshold_balance_mismatches >= 0),
  add column alert_threshold_failed_webhooks bigint not null default 5
    constraint settings_alert_threshold_failed_webhooks_not_negative check (alert_threshold_failed_webhooks >= 0),
  add column alert_threshold_stuck_recharges bigint not null default 10
    constraint settings_alert_threshold_stuck_recharges_not_negative check (alert_threshold_stuck_recharges >= 0),
  add column alert_threshold_negative_balances bigint not null default 10
    constraint settings_alert_threshold_negative_balances_not_negative check (alert_threshold_negative_balances >= 0),
  add column alert_threshold_installation bigint not null default 1
    constraint settings_alert_threshold_installation_not_negative check (alert_threshold_installation >= 0),
  add column alert_reminder_interval interval not null default '6 hours'
    constraint settings_alert_reminder_interval_at_least_a_minute check (alert_reminder_interval >= interval '1 minute'),
  -- An unknown zone name makes the expression raise (22023, time zone "..." not recognized),
  -- so a typo is refused when it is written, not on Monday morning.
  add column report_time_zone text not null default 'UTC'
    constraint settings_report_time_zone_known
      check ((timestamptz '2000-01-01 00:00:00+00' at time zone report_time_zone) is not null),
  add column report_weekday bigint not null default 1
    constraint settings_report_weekday_iso check (report_weekday between 1 and 7),
  add column report_hour bigint not null default 9
    constraint settings_report_hour_in_range check (report_hour between 0 and 23),
  add column monitor_history_retention interval not null default '90 days'
    constraint settings_monitor_history_retention_at_least_a_day check (monitor_history_retention >= interval '1 day'),
  add column cron_history_retention interval not null default '14 days'
    constraint settings_cron_history_retention_at_least_an_hour check (cron_history_retention >= interval '1 hour');

comment on column credit_private.settings.monitor_enabled is
  'false pauses the scheduled monitor: each scheduled run records a run with status paused and changes nothing (maintenance, or a test stack). credit_private.run_monitor(p_force => true) still runs. Default true.';
comment on column credit_private.settings.auto_fix_orphaned_recharges is
  'The monitor back-fills the missing recharge entry of orphaned recharges it finds (through the webhook''s own crediting path). Default true.';
comment on column credit_private.settings.auto_recompute_balances is
  'The monitor rewrites cached balances that differ from the ledger to the ledger sums. Default true.';
comment on column credit_private.settings.auto_retry_failed_webhooks is
  'The monitor retries failed (and stale received) inbox events from their stored payload, with backoff (webhook_retry_base_delay, webhook_retry_max_delay) up to webhook_retry_max_attempts. Events whose SQLSTATE is in retry_skip_error_codes and deferred events are never retried automatically. Default true.';
comment on column credit_private.settings.auto_restore_installation is
  'The monitor restores policies, grants, SECURITY DEFINER / search_path and cron jobs that differ from the package''s definition. Default false: a changed grant or policy is alerted, and a human decides.';
comment on column credit_private.settings.webhook_retry_base_delay is
  'Backoff of automatic webhook retries: an event that has been attempted n times is retried no sooner than base * 2^(n-1) after its last attempt (its updated_at), capped at webhook_retry_max_delay. Default 5 minutes.';
comment on column credit_private.settings.webhook_retry_max_delay is
  'The longest wait between two automatic retries of one event (a value below webhook_retry_base_delay caps every wait at it). Default 6 hours.';
comment on column credit_private.settings.webhook_retry_max_attempts is
  'Attempts (Stripe deliveries and retries together, the inbox''s attempts column) after which the monitor stops retrying an event and alerts (retries exhausted). Default 10.';
comment on column credit_private.settings.monitor_repair_batch is
  'Findings per category one monitor run looks at and repairs (counts stay exact; the rest is reported as beyond the batch and alerted). Default 500.';
comment on column credit_private.settings.alert_threshold_orphaned_recharges is
  'A monitor run that finds at least this many orphaned recharges alerts even when it repaired them all (a broken webhook shows up as many repairs). 0 disables this alert. Default 3.';
comment on column credit_private.settings.alert_threshold_dangling_recharge_entries is
  'A monitor run that finds at least this many dangling recharge entries alerts (they are also alerted as unrepaired: never repaired automatically). 0 disables this alert. Default 1.';
comment on column credit_private.settings.alert_threshold_balance_mismatches is
  'A monitor run that finds at least this many balance mismatches alerts even when it repaired them all. 0 disables this alert. Default 3.';
comment on column credit_private.settings.alert_threshold_failed_webhooks is
  'A monitor run that finds at least this many failed webhooks alerts, even while they wait for their first retry. 0 disables this alert. Default 5.';
comment on column credit_private.settings.alert_threshold_stuck_recharges is
  'A monitor run that finds at least this many recharges newly stuck in pending alerts. Stuck recharges are normal in small numbers (abandoned checkouts wait for Stripe''s expiry event) and alert only through this threshold. 0 disables it. Default 10.';
comment on column credit_private.settings.alert_threshold_negative_balances is
  'A monitor run that finds at least this many negative balances alerts. A negative balance after a refund or lost dispute is documented policy, so it alerts only through this threshold. 0 disables it. Default 10.';
comment on column credit_private.settings.alert_threshold_installation is
  'A monitor run that finds at least this many installation problems alerts, even when it restored them. 0 disables this alert. Default 1.';
comment on column credit_private.settings.alert_reminder_interval is
  'An open alert whose problem has not changed is sent again (as a reminder) at most this often. Default 6 hours.';
comment on column credit_private.settings.report_time_zone is
  'The IANA time zone (e.g. Europe/Berlin) in which the weekly report''s week and its sending time are read; pg_cron itself runs in UTC. Default UTC.';
comment on column credit_private.settings.report_weekday is
  'ISO weekday (1 = Monday ... 7 = Sunday) on which the weekly report is produced, in report_time_zone; it covers the seven days before that day. Default 1 (Monday).';
comment on column credit_private.settings.report_hour is
  'Hour (0-23, in report_time_zone) at which the weekly report is produced on report_weekday. Default 9.';
comment on column credit_private.settings.monitor_history_retention is
  'Monitor runs, resolved alerts, sent messages and recorded webhook failures older than this are deleted by the daily clean-up; weekly reports are kept. At least 1 day. Default 90 days.';
comment on column credit_private.settings.cron_history_retention is
  'pg_cron''s own cron.job_run_details rows (of every job) older than this are deleted by the daily clean-up, as Supabase recommends. At least 1 hour. Default 14 days.';
