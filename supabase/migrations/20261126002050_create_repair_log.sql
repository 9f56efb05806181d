-- Why: every repair changes money-like data or the security setup. Each change (and each
-- change a dry run would make) is recorded with who asked, why, what and the state before and
-- after, in a private, append-only table, so every credit a repair moved can be explained.

create table credit_private.repair_log (
  id bigint generated always as identity primary key,
  run_id uuid not null,
  requested_action text not null,
  action text not null,
  target_type text not null,
  target_id text not null,
  user_id uuid,
  dry_run boolean not null,
  actor text not null,
  reason text not null,
  db_role text not null,
  before jsonb,
  after jsonb,
  detail text,
  created_at timestamptz not null default now(),
  constraint repair_log_action_known check (
    action in ('fix_orphaned_recharges', 'recompute_balances', 'retry_failed_webhooks', 'restore_installation')
  ),
  constraint repair_log_requested_action_known check (
    requested_action in ('fix_orphaned_recharges', 'recompute_balances', 'retry_failed_webhooks',
                         'restore_installation', 'fix_all')
  ),
  constraint repair_log_actor_not_blank check (btrim(actor) <> ''),
  constraint repair_log_reason_not_blank check (btrim(reason) <> '')
);

create index repair_log_created_at_idx on credit_private.repair_log (created_at);
create index repair_log_run_id_idx on credit_private.repair_log (run_id);
create index repair_log_target_idx on credit_private.repair_log (target_type, target_id);

alter table credit_private.repair_log enable row level security;
revoke all on credit_private.repair_log from public, anon, authenticated, service_role;

comment on table credit_private.repair_log is
  'Audit trail of repairs: one row per object a repair changed (dry_run = false) or would have changed (dry_run = true), with run_id grouping one call, the actor and reason given by the caller, the database role that called, and the object''s state before and after. Written only by credit_private.run_repair.';
