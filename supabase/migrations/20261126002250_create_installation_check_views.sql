-- Why: the guide's diagnosis shows "whether the RLS policies and the RPC functions the system
-- needs exist", and its FAQ's most common case is a webhook that gets an RLS error. These two
-- views answer both: every expected object with what is wrong with it, and every unfinished
-- inbox event whose error looks like a permission or row-level-security failure.

create view credit_private.installation_check
with (security_invoker = on)
as
select
  e.kind,
  e.name,
  e.registered_by,
  p.problems is null as ok,
  coalesce(p.problems, '{}') as problems,
  coalesce(p.repairable, true) as repairable,
  p.suggested_action
from credit_private.expected_object e
  left join (
    select i.kind, i.name,
      array_agg(format('%s (expected %s, actual %s)', i.problem, i.expected, i.actual) order by i.problem) as problems,
      bool_and(i.repairable) as repairable,
      string_agg(distinct i.suggested_action, ' ') as suggested_action
    from credit_private.installation_problems() i
    group by i.kind, i.name
  ) p on p.kind = e.kind and p.name = e.name;

revoke all on credit_private.installation_check from public, anon, authenticated, service_role;

comment on view credit_private.installation_check is
  'Every object the package expects (credit_private.expected_object), ok or with its problems (expected vs actual) and whether restore_credit_installation can repair all of them.';

create view credit_private.inbox_permission_errors
with (security_invoker = on)
as
select
  e.event_id,
  e.type,
  e.status,
  e.attempts,
  e.last_error,
  e.last_error_code,
  e.received_at,
  e.updated_at,
  'A permission or row-level-security failure: run public.restore_credit_installation (restores policies, grants, SECURITY DEFINER), then public.retry_failed_webhooks.'::text
    as suggested_action
from credit_private.stripe_webhook_event e
where e.status in ('received', 'failed', 'deferred')
  and (
    e.last_error_code = '42501'
    or e.last_error ilike '%row-level security%'
    or e.last_error ilike '%row level security%'
    or e.last_error ilike '%permission denied%'
  );

revoke all on credit_private.inbox_permission_errors from public, anon, authenticated, service_role;

comment on view credit_private.inbox_permission_errors is
  'Unfinished inbox events whose last error is a permission failure (SQLSTATE 42501, "permission denied", "violates row-level security"): the signature of a broken installation, not of a bad event. Reads only the partial index of unfinished events.';
