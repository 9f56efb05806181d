-- Why: the 15-minute monitor must look only at recharges that changed since its last run, at
-- a cost independent of the table's size. Every write to credit_recharge sets updated_at, so
-- an index on it turns "changed since the watermark" into a short range scan.
-- (Ledger entries use credit_transaction_created_at_idx, the inbox its partial index of
-- unfinished events; both exist already.)
-- Building it blocks writes to credit_recharge for the build's duration (the migration runs
-- in a transaction, so not concurrently). On a large existing installation, build it first
-- with the same statement plus `concurrently`, outside a transaction; this one then does
-- nothing (hence `if not exists`).

-- squawk-ignore require-concurrent-index-creation
create index if not exists credit_recharge_updated_at_idx on public.credit_recharge (updated_at);

comment on index public.credit_recharge_updated_at_idx is
  'Lets the incremental check find the recharges changed since its watermark by range scan.';
