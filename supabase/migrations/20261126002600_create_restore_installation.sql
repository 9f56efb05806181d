-- Why: the guide's repair "restores missing RLS policies and repairs the RPC functions". With
-- the expected objects kept as data, the restore is generic: each object with a problem is
-- brought back to its registered definition (policy re-created from its stored definition,
-- grants given or taken per API role, SECURITY DEFINER and search_path set again, RLS
-- enabled, cron job scheduled). It never drops what it cannot re-create: a missing table or
-- function, and a policy the package does not define, are reported for a human.

create function credit_private.restore_expected_object(p_kind text, p_name text)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_definition jsonb;
  v_oid oid;
  v_role text;
  v_privilege text;
  v_expected text[];
  v_actual text[];
  v_roles text;
  v_job_id bigint;
  v_active boolean;
begin
  select e.definition into strict v_definition
  from credit_private.expected_object e
  where e.kind = p_kind and e.name = p_name;

  if p_kind = 'schema' then
    v_oid := pg_catalog.to_regnamespace(p_name);
    if v_oid is null then
      return;
    end if;
    foreach v_role in array array['anon', 'authenticated', 'service_role'] loop
      if (v_definition -> 'usage') ? v_role then
        if not pg_catalog.has_schema_privilege(v_role, v_oid, 'USAGE') then
          execute format('grant usage on schema %I to %I', p_name, v_role);
        end if;
      elsif pg_catalog.has_schema_privilege(v_role, v_oid, 'USAGE') then
        execute format('revoke usage on schema %I from %I', p_name, v_role);
        if pg_catalog.has_schema_privilege(v_role, v_oid, 'USAGE') then
          execute format('revoke usage on schema %I from public', p_name);
        end if;
      end if;
      if pg_catalog.has_schema_privilege(v_role, v_oid, 'CREATE') then
        execute format('revoke create on schema %I from %I', p_name, v_role);
        if pg_catalog.has_schema_privilege(v_role, v_oid, 'CREATE') then
          execute format('revoke create on schema %I from public', p_name);
        end if;
      end if;
    end loop;
    return;
  end if;

  if p_kind in ('table', 'view') then
    v_oid := pg_catalog.to_regclass(p_name);
    if v_oid is null then
      return;
    end if;
    if p_kind = 'table' and (v_definition ->> 'rls')::boolean
       and not (select c.relrowsecurity from pg_catalog.pg_class c where c.oid = v_oid) then
      execute format('alter table %s enable row level security', v_oid::regclass);
    end if;
    if p_kind = 'view' and (v_definition ->> 'security_invoker')::boolean then
      execute format('alter view %s set (security_invoker = on)', v_oid::regclass);
    end if;
    if exists (
      select 1 from pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
      where c.oid = v_oid and a.grantee = 0
    ) then
      execute format('revoke all on %s from public', v_oid::regclass);
    end if;
    foreach v_role in array array['anon', 'authenticated', 'service_role'] loop
      v_expected := array(select jsonb_array_elements_text(v_definition #> array['privileges', v_role]));
      v_actual := array(select jsonb_array_elements_text(credit_private.relation_privileges(v_oid::regclass) -> v_role));
      foreach v_privilege in array array(select unnest(v_actual) except select unnest(v_expected)) loop
        -- A table-level revoke also takes back that privilege's column-level grants.
        execute format('revoke %s on %s from %I', v_privilege, v_oid::regclass, v_role);
      end loop;
      foreach v_privilege in array array(select unnest(v_expected) except select unnest(v_actual)) loop
        execute format('grant %s on %s to %I', v_privilege, v_oid::regclass, v_role);
      end loop;
    end loop;
    return;
  end if;

  if p_kind = 'policy' then
    v_oid := pg_catalog.to_regclass(v_definition ->> 'table');
    if v_oid is null then
      return;
    end if;
    if credit_private.policy_definition(v_oid::regclass, v_definition ->> 'policy') is not distinct from v_definition then
      return;
    end if;
    if credit_private.policy_definition(v_oid::regclass, v_definition ->> 'policy') is not null then
      execute format('drop policy %I on %s', v_definition ->> 'policy', v_oid::regclass);
    end if;
    select string_agg(case when r.role_name = 'public' then 'public' else quote_ident(r.role_name) end, ', ')
    into v_roles
    from jsonb_array_elements_text(v_definition -> 'roles') as r (role_name);
    -- using and with_check are expressions (deparsed by policy_definition at registration,
    -- names fully qualified) and cannot be quoted as identifiers or literals; they come only
    -- from credit_private.expected_object, which only the package's owner can write.
    execute format('create policy %I on %s as %s for %s to %s%s%s',
      v_definition ->> 'policy', v_oid::regclass,
      case when (v_definition ->> 'permissive')::boolean then 'permissive' else 'restrictive' end,
      v_definition ->> 'command', v_roles,
      coalesce(' using (' || (v_definition ->> 'using') || ')', ''),
      coalesce(' with check (' || (v_definition ->> 'with_check') || ')', ''));
    return;
  end if;

  if p_kind = 'function' then
    v_oid := pg_catalog.to_regprocedure(p_name);
    if v_oid is null then
      return;
    end if;
    execute format('alter function %s %s', v_oid::regprocedure,
      case when (v_definition ->> 'security_definer')::boolean then 'security definer' else 'security invoker' end);
    execute format('alter function %s set search_path = %L', v_oid::regprocedure, v_definition ->> 'search_path');
    if exists (
      select 1 from pg_catalog.pg_proc p, pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
      where p.oid = v_oid and a.grantee = 0
    ) then
      execute format('revoke execute on function %s from public', v_oid::regprocedure);
    end if;
    foreach v_role in array array['anon', 'authenticated', 'service_role'] loop
      if (v_definition -> 'executable_by') ? v_role then
        if not pg_catalog.has_function_privilege(v_role, v_oid, 'EXECUTE') then
          execute format('grant execute on function %s to %I', v_oid::regprocedure, v_role);
        end if;
      elsif pg_catalog.has_function_privilege(v_role, v_oid, 'EXECUTE') then
        execute format('revoke execute on function %s from %I', v_oid::regprocedure, v_role);
      end if;
    end loop;
    return;
  end if;

  if p_kind = 'cron_job' then
    if pg_catalog.to_regclass('cron.job') is null then
      return;
    end if;
    -- Dynamic: the package must load where pg_cron is absent. Scheduling a name again
    -- replaces its schedule and command.
    execute 'select cron.schedule($1, $2, $3)' into v_job_id
      using p_name, v_definition ->> 'schedule', v_definition ->> 'command';
    execute 'select j.jobid, j.active from cron.job j where j.jobname = $1 order by j.jobid limit 1'
      into v_job_id, v_active
      using p_name;
    if not v_active then
      execute 'select cron.alter_job(job_id => $1, active => true)' using v_job_id;
    end if;
    return;
  end if;
end;
$$;

revoke execute on function credit_private.restore_expected_object(text, text) from public, anon, authenticated, service_role;

comment on function credit_private.restore_expected_object(text, text) is
  'Brings one expected object back to its registered definition where it exists (grants, RLS, security_invoker, policy, SECURITY DEFINER and search_path, cron job); does nothing to a missing table, view or function, which only a migration can re-create.';

create function credit_private.restore_installation()
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_object record;
  v_after text[];
  v_changes jsonb := '[]'::jsonb;
  v_skipped jsonb := '[]'::jsonb;
begin
  -- Schemas and tables before policies and functions, so each step finds what it needs.
  for v_object in
    select i.kind, i.name,
      array_agg(format('%s (expected %s, actual %s)', i.problem, i.expected, i.actual) order by i.problem)
        filter (where i.repairable) as repairable_problems,
      array_agg(format('%s: %s', i.problem, i.suggested_action) order by i.problem)
        filter (where not i.repairable) as other_problems
    from credit_private.installation_problems() i
    group by i.kind, i.name
    order by array_position(array['schema', 'table', 'view', 'policy', 'function', 'cron_job'], i.kind), i.name
  loop
    if v_object.other_problems is not null then
      v_skipped := v_skipped || jsonb_build_object(
        'target_type', v_object.kind, 'target_id', v_object.name, 'user_id', null,
        'reason', array_to_string(v_object.other_problems, '; '));
    end if;
    if v_object.repairable_problems is null then
      continue;
    end if;

    perform credit_private.restore_expected_object(v_object.kind, v_object.name);

    v_after := array(
      select format('%s (expected %s, actual %s)', p.problem, p.expected, p.actual)
      from credit_private.expected_object_problems(v_object.kind, v_object.name) p
      where p.repairable
      order by p.problem
    );
    if cardinality(v_after) > 0 then
      raise exception 'restoring % % left problems: %', v_object.kind, v_object.name, array_to_string(v_after, '; ')
        using errcode = '55000';
    end if;
    v_changes := v_changes || jsonb_build_object(
      'target_type', v_object.kind, 'target_id', v_object.name, 'user_id', null,
      'before', jsonb_build_object('problems', to_jsonb(v_object.repairable_problems)),
      'after', jsonb_build_object('problems', '[]'::jsonb),
      'detail', format('restored the %s as the package defines it', v_object.kind));
  end loop;

  return jsonb_build_object(
    'action', 'restore_installation',
    'changed', jsonb_array_length(v_changes),
    'nothing_to_do', jsonb_array_length(v_changes) = 0,
    'changes', v_changes,
    'skipped', v_skipped
  );
end;
$$;

revoke execute on function credit_private.restore_installation() from public, anon, authenticated, service_role;

comment on function credit_private.restore_installation() is
  'Restores every expected object that has a repairable problem and verifies it (raises 55000 if a problem remains); lists problems only a human or a migration can fix (missing objects, unexpected policies, pg_cron absent) as skipped. Idempotent. Called through credit_private.run_repair.';
