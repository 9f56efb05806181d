-- Why: PostgreSQL 15 reads every CHECK constraint of a table back from its stored node tree
-- and prepares it again on each INSERT or UPDATE statement (ExecRelCheck does not keep it
-- across statements), so a constraint costs in proportion to the size of that tree. The
-- four "value is one of" constraints were written `x in ('a', 'b', ...)`, which is stored as
-- an array built from one node per value and folded back into a constant every time. The
-- same lists written as one constant array store half the tree and need no folding: 3% of a
-- credit's CPU (issue 2's benchmark; docs/benchmarks.md). Same names, same accepted values,
-- same errors.
--
-- Each is added NOT VALID here (no table scan under the ACCESS EXCLUSIVE lock) and validated
-- by the next migration, in its own transaction, under a lock that lets reads and writes go on.

alter table public.credit_recharge drop constraint credit_recharge_status_known;
alter table public.credit_recharge add constraint credit_recharge_status_known
  check (status = any ('{pending,completed,failed,expired,refunded}'::text[])) not valid;

alter table public.credit_recharge drop constraint credit_recharge_credited_has_completed_at;
alter table public.credit_recharge add constraint credit_recharge_credited_has_completed_at
  check ((status = any ('{completed,refunded}'::text[])) = (completed_at is not null)) not valid;

alter table public.credit_transaction drop constraint credit_transaction_type_known;
alter table public.credit_transaction add constraint credit_transaction_type_known
  check (type = any ('{recharge,spend,refund,dispute,adjustment}'::text[])) not valid;

alter table credit_private.stripe_webhook_event drop constraint stripe_webhook_event_status_known;
alter table credit_private.stripe_webhook_event add constraint stripe_webhook_event_status_known
  check (status = any ('{received,processed,failed,ignored,deferred}'::text[])) not valid;
