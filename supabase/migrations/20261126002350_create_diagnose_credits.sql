-- Why: the guide's diagnosis, as one RPC that an admin endpoint, a monitor and the psql
-- script share: a structured report with exactly the categories the issue names, each with
-- an exact count, the rows (ids, user, amounts) and a suggested action. It only reads.

create function credit_private.category_json(p_findings jsonb[], p_max_rows integer)
returns jsonb
language sql
immutable
security invoker
set search_path = ''
as $$
  select jsonb_build_object(
    'count', coalesce(cardinality(p_findings), 0),
    'truncated', coalesce(cardinality(p_findings), 0) > p_max_rows,
    'findings', coalesce(to_jsonb(p_findings[1:p_max_rows]), '[]'::jsonb)
  )
$$;

revoke execute on function credit_private.category_json(jsonb[], integer) from public, anon, authenticated, service_role;

comment on function credit_private.category_json(jsonb[], integer) is
  'One report category: {count (exact), truncated, findings (the first p_max_rows)}.';

create function credit_private.installation_category(p_max_rows integer)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
  select credit_private.category_json(
    array(
      select f.finding
      from (
        select 1 as part, i.kind || ' ' || i.name as sort_key,
          jsonb_build_object('kind', i.kind, 'name', i.name, 'problem', i.problem, 'expected', i.expected,
            'actual', i.actual, 'repairable', i.repairable, 'registered_by', i.registered_by,
            'suggested_action', i.suggested_action) as finding
        from credit_private.installation_problems() i
        union all
        select 2, p.event_id,
          jsonb_build_object('kind', 'inbox_event', 'name', p.event_id,
            'problem', format('%s event failed with a permission error (SQLSTATE %s)', p.type, coalesce(p.last_error_code, 'unknown')),
            'expected', 'no permission failures', 'actual', p.last_error, 'repairable', false,
            'attempts', p.attempts, 'status', p.status, 'suggested_action', p.suggested_action)
        from credit_private.inbox_permission_errors p
      ) f
      order by f.part, f.sort_key, f.finding ->> 'problem'
    ),
    p_max_rows
  ) || jsonb_build_object('checked_objects', (select count(*) from credit_private.expected_object))
$$;

revoke execute on function credit_private.installation_category(integer) from public, anon, authenticated, service_role;

comment on function credit_private.installation_category(integer) is
  'The installation category of a report: every problem of an expected object, then every unfinished inbox event that failed with a permission error, plus checked_objects. Catalog and small-index reads only.';

create function credit_private.report(p_scope text, p_categories jsonb, p_extra jsonb)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
  select jsonb_build_object(
    'scope', p_scope,
    'generated_at', now(),
    'ok', not exists (select 1 from jsonb_each(p_categories) c where (c.value ->> 'count')::bigint > 0),
    'counts', (select jsonb_object_agg(c.key, (c.value ->> 'count')::bigint) from jsonb_each(p_categories) c),
    'categories', p_categories,
    'settings', (
      select jsonb_build_object(
        'failed_webhook_age', s.failed_webhook_age, 'deferred_webhook_age', s.deferred_webhook_age,
        'stuck_recharge_age', s.stuck_recharge_age, 'max_report_rows', s.max_report_rows)
      from credit_private.current_settings() s
    )
  ) || coalesce(p_extra, '{}'::jsonb)
$$;

revoke execute on function credit_private.report(text, jsonb, jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.report(text, jsonb, jsonb) is
  'Wraps report categories in the report envelope: scope, generated_at, ok (every count zero), counts per category, categories, the thresholds used.';

create function public.diagnose_credits(max_rows integer default null)
returns jsonb
language plpgsql
stable
-- Definer: the report reads every user's rows and the private schema, which service_role may
-- not read directly; this function is the one read-only path that does.
security definer
set search_path = ''
-- For this call only: the per-user ledger sums are one hash aggregate over the whole ledger
-- (about 150 bytes per user); with the default 4MB it sorts on disk, several times slower.
-- JIT off: compiling these plans costs more than running them.
set work_mem = '256MB'
set jit = off
as $$
declare
  v_max integer := coalesce(diagnose_credits.max_rows, (credit_private.current_settings()).max_report_rows::integer);
begin
  if v_max < 0 then
    raise exception 'max_rows must not be negative, got %', v_max using errcode = '22023';
  end if;

  return credit_private.report('full', jsonb_build_object(
    'orphaned_recharges', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.completed_at, v.recharge_id), v_max)
      from credit_private.orphaned_recharges v),
    'dangling_recharge_entries', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.created_at, v.transaction_id), v_max)
      from credit_private.dangling_recharge_entries v),
    'balance_mismatches', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.user_id), v_max)
      from credit_private.balance_mismatches v),
    'failed_webhooks', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.received_at, v.event_id), v_max)
      from credit_private.failed_webhooks v),
    'stuck_recharges', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.created_at, v.recharge_id), v_max)
      from credit_private.stuck_recharges v),
    'negative_balances', (
      select credit_private.category_json(array_agg(to_jsonb(v) order by v.balance, v.user_id), v_max)
      from credit_private.negative_balances v),
    'installation', credit_private.installation_category(v_max)
  ), null);
end;
$$;

revoke execute on function public.diagnose_credits(integer) from public, anon, authenticated;
grant execute on function public.diagnose_credits(integer) to service_role;

comment on function public.diagnose_credits(integer) is
  'Full read-only diagnosis: {scope: full, generated_at, ok, counts, categories, settings} with categories orphaned_recharges, dangling_recharge_entries, balance_mismatches, failed_webhooks, stuck_recharges, negative_balances and installation, each {count, truncated, findings[]} where every finding names its rows and a suggested_action. max_rows (default settings.max_report_rows) caps the findings listed per category; counts stay exact. Changes nothing.';
