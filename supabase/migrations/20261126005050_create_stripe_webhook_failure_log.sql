-- Why: the weekly report gives the webhook failure rate. The inbox keeps only an event's
-- latest status and its attempt count, and attempts alone cannot tell a failure from a
-- refund that was deferred and applied later (both take two attempts); an event that failed
-- and then succeeded leaves no trace of its failure. So every failed attempt is recorded
-- here, by a trigger on the inbox row, in the same transaction that records the failure:
-- nothing in the webhook path changes, and a failure is counted exactly once.

create table credit_private.stripe_webhook_failure (
  id bigint generated always as identity primary key,
  event_id text not null,
  event_type text not null,
  attempt bigint not null,
  error_code text,
  error text,
  failed_at timestamptz not null default now()
);

create index stripe_webhook_failure_failed_at_idx on credit_private.stripe_webhook_failure (failed_at);
create index stripe_webhook_failure_event_id_idx on credit_private.stripe_webhook_failure (event_id);

alter table credit_private.stripe_webhook_failure enable row level security;
revoke all on credit_private.stripe_webhook_failure from public, anon, authenticated, service_role;

comment on table credit_private.stripe_webhook_failure is
  'One row per failed attempt to apply an inbox event (the attempt number, SQLSTATE and message at that moment), written by a trigger on credit_private.stripe_webhook_event. Read by the weekly report; deleted after settings.monitor_history_retention.';

create function credit_private.record_stripe_webhook_failure()
returns trigger
language plpgsql
security invoker
set search_path = ''
as $$
begin
  insert into credit_private.stripe_webhook_failure (event_id, event_type, attempt, error_code, error)
  values (new.event_id, new.type, new.attempts, new.last_error_code, left(new.last_error, 1000));
  return null;
end;
$$;

revoke execute on function credit_private.record_stripe_webhook_failure() from public, anon, authenticated, service_role;

comment on function credit_private.record_stripe_webhook_failure() is
  'Trigger function: records the failed attempt an inbox row was just updated with.';

create trigger stripe_webhook_event_record_failure
  after update of status, attempts on credit_private.stripe_webhook_event
  for each row
  when (new.status = 'failed' and new.attempts > old.attempts)
  execute function credit_private.record_stripe_webhook_failure();

comment on trigger stripe_webhook_event_record_failure on credit_private.stripe_webhook_event is
  'Records each failed attempt (status becomes or stays failed with one more attempt) in credit_private.stripe_webhook_failure.';
