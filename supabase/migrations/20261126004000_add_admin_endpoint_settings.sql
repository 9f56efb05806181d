-- Why: the admin endpoint (admin-fix-credits) refuses a client for a while after repeated
-- failed key checks, and keeps an audit row of every call. How many failures, for how long,
-- how many clients are tracked and how long audit rows are kept are operator decisions, so
-- they live with the other thresholds in the one settings row, each with a check and a
-- documented default, changeable without a migration.

-- Column checks, not a separate constraint: the table has one row, and a constraint added
-- with the column is checked as the column is filled.
alter table credit_private.settings
  add column admin_auth_max_failures bigint not null default 5
    constraint settings_admin_auth_max_failures_in_range check (admin_auth_max_failures between 1 and 1000),
  add column admin_auth_failure_window interval not null default '15 minutes'
    constraint settings_admin_auth_failure_window_positive check (admin_auth_failure_window > interval '0'),
  add column admin_auth_block_duration interval not null default '15 minutes'
    constraint settings_admin_auth_block_duration_positive check (admin_auth_block_duration > interval '0'),
  add column admin_auth_max_clients bigint not null default 10000
    constraint settings_admin_auth_max_clients_in_range check (admin_auth_max_clients between 1 and 1000000),
  add column admin_audit_retention interval not null default '365 days'
    constraint settings_admin_audit_retention_at_least_a_day check (admin_audit_retention >= interval '1 day');

comment on column credit_private.settings.admin_auth_max_failures is
  'Failed admin key checks from one client, within admin_auth_failure_window, after which the admin endpoint refuses that client (HTTP 429) for admin_auth_block_duration, whatever key it sends. Default 5.';
comment on column credit_private.settings.admin_auth_failure_window is
  'The window in which failed admin key checks of one client are counted; it restarts with the first failure after it ends. Default 15 minutes.';
comment on column credit_private.settings.admin_auth_block_duration is
  'How long a client that reached admin_auth_max_failures is refused (HTTP 429, Retry-After). Default 15 minutes.';
comment on column credit_private.settings.admin_auth_max_clients is
  'Clients tracked at most in credit_private.admin_auth_failure; beyond it, new failing clients share one overflow counter, so the table stays bounded when an attacker varies its address. Default 10000.';
comment on column credit_private.settings.admin_audit_retention is
  'Age after which rows of credit_private.admin_audit_log are deleted (a few at a time, as new calls are logged). At least 1 day. Default 365 days.';
