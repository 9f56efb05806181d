-- Why: validates the constraints 20261126008100 added NOT VALID, in a transaction of its own,
-- so the scan of existing rows holds a SHARE UPDATE EXCLUSIVE lock (reads and writes go on)
-- rather than the ACCESS EXCLUSIVE lock of the ALTER that added them.

alter table public.credit_recharge validate constraint credit_recharge_status_known;
alter table public.credit_recharge validate constraint credit_recharge_credited_has_completed_at;
alter table public.credit_transaction validate constraint credit_transaction_type_known;
alter table credit_private.stripe_webhook_event validate constraint stripe_webhook_event_status_known;
