-- Why: a monitor that runs every 15 minutes must not post the same problem to Slack every 15
-- minutes, nor forget to say when it is over. Each problem is one alert row keyed by a
-- fingerprint (what it is about, e.g. unrepaired:orphaned_recharges) with a signature of its
-- current content (e.g. which rows): a new fingerprint or a changed signature sends a message,
-- the same one sends nothing until the reminder interval has passed, and an alert whose
-- problem is gone is resolved with a message saying so. Messages wait in an outbox until the
-- payment-monitor function delivers them; it claims them with a lease, so two concurrent
-- deliveries never send one twice, and a failed delivery is retried later. Without a Slack
-- URL they simply stay in the outbox, readable in a view.

create table credit_private.monitor_alert (
  fingerprint text primary key,
  kind text not null,
  category text not null,
  severity text not null,
  status text not null default 'open',
  signature text not null,
  summary text not null,
  details jsonb not null default '{}',
  occurrences bigint not null default 1,
  first_seen_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  last_notified_at timestamptz not null default now(),
  resolved_at timestamptz,
  last_run_id bigint,
  constraint monitor_alert_kind_known check (kind in ('unrepaired', 'threshold', 'run_error')),
  constraint monitor_alert_severity_known check (severity in ('warning', 'critical')),
  constraint monitor_alert_status_known check (status in ('open', 'resolved')),
  constraint monitor_alert_resolved_at_iff_resolved check ((status = 'resolved') = (resolved_at is not null)),
  constraint monitor_alert_details_is_object check (jsonb_typeof(details) = 'object')
);

create index monitor_alert_open_idx on credit_private.monitor_alert (kind, category) where status = 'open';
create index monitor_alert_resolved_at_idx on credit_private.monitor_alert (resolved_at) where status = 'resolved';

alter table credit_private.monitor_alert enable row level security;
revoke all on credit_private.monitor_alert from public, anon, authenticated, service_role;

comment on table credit_private.monitor_alert is
  'One row per problem the monitor alerts about, keyed by fingerprint (kind:category, e.g. unrepaired:orphaned_recharges, threshold:failed_webhooks, run_error:check). signature is a digest of its current content: a message is queued when the alert opens, when its signature changes, as a reminder after settings.alert_reminder_interval (last_notified_at), and when it is resolved. details holds the count, the worst rows and, for unrepaired alerts, the ids the monitor re-checks at every run.';

create table credit_private.monitor_outbox (
  id bigint generated always as identity primary key,
  kind text not null,
  fingerprint text,
  report_id bigint,
  run_id bigint,
  title text not null,
  body jsonb not null,
  status text not null default 'pending',
  attempts bigint not null default 0,
  next_attempt_at timestamptz not null default now(),
  claimed_until timestamptz,
  claim_token uuid,
  last_error text,
  created_at timestamptz not null default now(),
  sent_at timestamptz,
  constraint monitor_outbox_kind_known check (kind in ('alert', 'changed', 'reminder', 'resolved', 'weekly_report')),
  constraint monitor_outbox_status_known check (status in ('pending', 'sent')),
  constraint monitor_outbox_sent_at_iff_sent check ((status = 'sent') = (sent_at is not null)),
  constraint monitor_outbox_body_is_object check (jsonb_typeof(body) = 'object'),
  constraint monitor_outbox_attempts_not_negative check (attempts >= 0)
);

create index monitor_outbox_pending_idx on credit_private.monitor_outbox (next_attempt_at, id) where status = 'pending';
create index monitor_outbox_sent_at_idx on credit_private.monitor_outbox (sent_at) where status = 'sent';

alter table credit_private.monitor_outbox enable row level security;
revoke all on credit_private.monitor_outbox from public, anon, authenticated, service_role;

comment on table credit_private.monitor_outbox is
  'Messages waiting for (pending) or done with (sent) delivery to Slack by the payment-monitor function: alerts (kind alert, changed, reminder, resolved; fingerprint names the alert) and weekly reports (report_id). A delivery claims a message with a random claim_token until claimed_until (the lease) and increments attempts; only that token can mark it sent, or failed (last_error, next_attempt_at pushed back), so concurrent deliveries never send one message twice.';

create view credit_private.monitor_open_alerts
with (security_invoker = on)
as
select
  a.fingerprint,
  a.severity,
  a.kind,
  a.category,
  a.summary,
  (a.details ->> 'count')::bigint as count,
  a.occurrences,
  a.first_seen_at,
  a.last_seen_at,
  a.last_notified_at,
  a.details
from credit_private.monitor_alert a
where a.status = 'open'
order by a.severity = 'critical' desc, a.first_seen_at, a.fingerprint;

revoke all on credit_private.monitor_open_alerts from public, anon, authenticated, service_role;

comment on view credit_private.monitor_open_alerts is
  'The problems the monitor currently alerts about, critical first: what (summary), how many (count), since when, how many runs saw them and when a message was last queued.';

create view credit_private.monitor_pending_messages
with (security_invoker = on)
as
select
  o.id,
  o.kind,
  o.title,
  o.created_at,
  o.attempts,
  o.next_attempt_at,
  o.claimed_until,
  o.last_error,
  o.fingerprint,
  o.report_id,
  o.body
from credit_private.monitor_outbox o
where o.status = 'pending'
order by o.id;

revoke all on credit_private.monitor_pending_messages from public, anon, authenticated, service_role;

comment on view credit_private.monitor_pending_messages is
  'Alerts and reports not delivered yet, oldest first: all of them while SLACK_WEBHOOK_URL is not set; otherwise the ones waiting for their next attempt (last_error says why the previous one failed).';
