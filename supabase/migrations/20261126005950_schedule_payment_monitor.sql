-- Why: monitoring must start when the package is installed, not when someone remembers to
-- start it. This runs the idempotent setup once: the monitor every 15 minutes, the hourly
-- weekly-report check, the daily clean-up, and (where pg_net and Vault with their secrets
-- exist) the delivery call to the payment-monitor function. Where pg_cron is not enabled the
-- jobs are only registered, and the installation check says to enable it; run
-- `select credit_private.setup_payment_monitor_schedule();` again after enabling it or after
-- storing the Vault secrets.

select credit_private.setup_payment_monitor_schedule();
