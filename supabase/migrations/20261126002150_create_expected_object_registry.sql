-- Why: the guide's worst failure is a webhook silently blocked by a dropped policy, a revoked
-- grant or an RPC that lost SECURITY DEFINER. The package therefore keeps, as data, the list
-- of every schema, table, view, policy, function and pg_cron job it expects and how each must
-- look; the installation check compares the live catalog with this list, and the restore
-- repair brings the catalog back to it. Later migrations (monitoring, admin) add their own
-- objects with the credit_private.expect_* functions, so the check grows with the package.

create table credit_private.expected_object (
  kind text not null,
  name text not null,
  definition jsonb not null,
  registered_by text not null,
  registered_at timestamptz not null default now(),
  constraint expected_object_pkey primary key (kind, name),
  constraint expected_object_kind_known
    check (kind in ('schema', 'table', 'view', 'policy', 'function', 'cron_job')),
  constraint expected_object_definition_is_object check (jsonb_typeof(definition) = 'object')
);

alter table credit_private.expected_object enable row level security;
revoke all on credit_private.expected_object from public, anon, authenticated, service_role;

comment on table credit_private.expected_object is
  'What the package expects to exist, one row per object: kind schema ({usage}), table ({rls, privileges}), view ({security_invoker, privileges}), policy (its full definition), function ({security_definer, search_path, executable_by}) or cron_job ({schedule, command, active}). privileges and usage name exactly what anon, authenticated and service_role may do; anything more or less is a problem. Filled by the credit_private.expect_* functions.';

-- The exact table privileges each API role holds on a relation, in a canonical order.
-- Column grants count (has_any_column_privilege), since they open a table just as well.
create function credit_private.relation_privileges(p_relation regclass)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
  select jsonb_object_agg(r.role_name, to_jsonb(array(
    select p.privilege
    from unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'])
      with ordinality as p (privilege, position)
    where case
      when p.privilege in ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
        then pg_catalog.has_any_column_privilege(r.role_name, p_relation, p.privilege)
      else pg_catalog.has_table_privilege(r.role_name, p_relation, p.privilege)
    end
    order by p.position
  )))
  from unnest(array['anon', 'authenticated', 'service_role']) as r (role_name)
$$;

revoke execute on function credit_private.relation_privileges(regclass) from public, anon, authenticated, service_role;

comment on function credit_private.relation_privileges(regclass) is
  'The privileges anon, authenticated and service_role hold on a table or view (table or any column level, PUBLIC included), as {"role": ["SELECT", ...]} in a fixed order.';

-- Turns {"authenticated": ["select"]} into the canonical form relation_privileges returns.
create function credit_private.normalize_privileges(p_privileges jsonb)
returns jsonb
language plpgsql
immutable
security invoker
set search_path = ''
as $$
declare
  v_key text;
begin
  for v_key in select jsonb_object_keys(coalesce(p_privileges, '{}'::jsonb)) loop
    if v_key not in ('anon', 'authenticated', 'service_role') then
      raise exception 'privileges may name anon, authenticated and service_role only, not %', v_key
        using errcode = '22023';
    end if;
  end loop;
  if exists (
    select 1
    from jsonb_each(coalesce(p_privileges, '{}'::jsonb)) as e (role_name, privileges),
      jsonb_array_elements_text(e.privileges) as p (privilege)
    where upper(p.privilege) not in ('SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER')
  ) then
    raise exception 'unknown table privilege in %', p_privileges using errcode = '22023';
  end if;
  return (
    select jsonb_object_agg(r.role_name, to_jsonb(array(
      select p.privilege
      from unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER'])
        with ordinality as p (privilege, position)
      where p_privileges -> r.role_name is not null
        and exists (
          select 1 from jsonb_array_elements_text(p_privileges -> r.role_name) as g (privilege)
          where upper(g.privilege) = p.privilege
        )
      order by p.position
    )))
    from unnest(array['anon', 'authenticated', 'service_role']) as r (role_name)
  );
end;
$$;

revoke execute on function credit_private.normalize_privileges(jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.normalize_privileges(jsonb) is
  'Validates a privileges object (keys anon, authenticated, service_role; values table privilege names) and returns it in the canonical form of relation_privileges; an absent role means no privilege.';

-- The live definition of a policy, deparsed with every name schema-qualified (search_path
-- is empty here), so that it can be compared and re-created as it is.
create function credit_private.policy_definition(p_table regclass, p_policy text)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$
  select jsonb_build_object(
    'table', p.polrelid::regclass::text,
    'policy', p.polname::text,
    'permissive', p.polpermissive,
    'command', case p.polcmd
      when 'r' then 'SELECT' when 'a' then 'INSERT' when 'w' then 'UPDATE' when 'd' then 'DELETE' else 'ALL'
    end,
    'roles', to_jsonb(array(
      select case when r.role_oid = 0 then 'public' else pg_catalog.pg_get_userbyid(r.role_oid)::text end
      from unnest(p.polroles) as r (role_oid)
      order by 1
    )),
    'using', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
    'with_check', pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid)
  )
  from pg_catalog.pg_policy p
  where p.polrelid = p_table and p.polname = p_policy
$$;

revoke execute on function credit_private.policy_definition(regclass, text) from public, anon, authenticated, service_role;

comment on function credit_private.policy_definition(regclass, text) is
  'A policy as {table, policy, permissive, command, roles, using, with_check}, expressions deparsed fully qualified; null when the policy does not exist.';

create function credit_private.expected_object_problems(p_kind text, p_name text)
returns table (problem text, expected text, actual text, repairable boolean)
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_definition jsonb;
  v_oid oid;
  v_actual jsonb;
  v_role text;
  v_expected_list text[];
  v_actual_list text[];
  v_flag boolean;
  v_config text;
  v_schedule text;
  v_command text;
  v_active boolean;
  v_relkind "char";
begin
  select e.definition into v_definition
  from credit_private.expected_object e
  where e.kind = p_kind and e.name = p_name;
  if not found then
    raise exception 'no expected % named %', p_kind, p_name using errcode = 'P0002';
  end if;

  if p_kind = 'schema' then
    v_oid := pg_catalog.to_regnamespace(p_name);
    if v_oid is null then
      return query select 'schema is missing', 'schema exists', 'absent', false;
      return;
    end if;
    foreach v_role in array array['anon', 'authenticated', 'service_role'] loop
      v_flag := (v_definition -> 'usage') ? v_role;
      if pg_catalog.has_schema_privilege(v_role, v_oid, 'USAGE') <> v_flag then
        return query select format('%s %s USAGE on the schema', v_role, case when v_flag then 'lacks' else 'has' end),
          format('USAGE %s', case when v_flag then 'granted' else 'not granted' end),
          format('USAGE %s', case when v_flag then 'not granted' else 'granted' end), true;
      end if;
      if pg_catalog.has_schema_privilege(v_role, v_oid, 'CREATE') then
        return query select format('%s has CREATE on the schema', v_role), 'CREATE not granted', 'CREATE granted', true;
      end if;
    end loop;
    return;
  end if;

  if p_kind in ('table', 'view') then
    v_oid := pg_catalog.to_regclass(p_name);
    v_relkind := (select c.relkind from pg_catalog.pg_class c where c.oid = v_oid);
    if v_oid is null or v_relkind is distinct from (case p_kind when 'table' then 'r' else 'v' end)::"char" then
      return query select format('%s is missing', p_kind), format('%s exists', p_kind), 'absent', false;
      return;
    end if;
    if p_kind = 'table' and (v_definition ->> 'rls')::boolean
       and not (select c.relrowsecurity from pg_catalog.pg_class c where c.oid = v_oid) then
      return query select 'row level security is disabled', 'row level security enabled', 'disabled', true;
    end if;
    if p_kind = 'view' and (v_definition ->> 'security_invoker')::boolean
       and not exists (
         select 1 from pg_catalog.pg_class c
         where c.oid = v_oid and 'security_invoker=on' = any (coalesce(c.reloptions, '{}'))
       ) then
      return query select 'view is not security_invoker', 'security_invoker = on', 'off', true;
    end if;
    v_actual := credit_private.relation_privileges(v_oid::regclass);
    foreach v_role in array array['anon', 'authenticated', 'service_role'] loop
      v_expected_list := array(select jsonb_array_elements_text(v_definition #> array['privileges', v_role]));
      v_actual_list := array(select jsonb_array_elements_text(v_actual -> v_role));
      if not v_expected_list <@ v_actual_list then
        return query select format('%s lacks %s', v_role,
            array_to_string(array(select unnest(v_expected_list) except select unnest(v_actual_list) order by 1), ', ')),
          coalesce(nullif(array_to_string(v_expected_list, ', '), ''), 'no privilege'),
          coalesce(nullif(array_to_string(v_actual_list, ', '), ''), 'no privilege'), true;
      end if;
      if not v_actual_list <@ v_expected_list then
        return query select format('%s has %s, which the package does not grant', v_role,
            array_to_string(array(select unnest(v_actual_list) except select unnest(v_expected_list) order by 1), ', ')),
          coalesce(nullif(array_to_string(v_expected_list, ', '), ''), 'no privilege'),
          coalesce(nullif(array_to_string(v_actual_list, ', '), ''), 'no privilege'), true;
      end if;
    end loop;
    if exists (
      select 1 from pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
      where c.oid = v_oid and a.grantee = 0
    ) then
      return query select 'PUBLIC holds privileges', 'no privilege for PUBLIC',
        (select string_agg(a.privilege_type, ', ' order by a.privilege_type)
         from pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a where c.oid = v_oid and a.grantee = 0),
        true;
    end if;
    if p_kind = 'table' then
      return query
        select format('unexpected policy %s', quote_ident(p.polname)),
          'only the policies the package defines',
          credit_private.policy_definition(v_oid::regclass, p.polname)::text, false
        from pg_catalog.pg_policy p
        where p.polrelid = v_oid
          and not exists (
            select 1 from credit_private.expected_object e
            where e.kind = 'policy' and e.definition ->> 'table' = v_oid::regclass::text
              and e.definition ->> 'policy' = p.polname::text
          )
        order by p.polname;
    end if;
    return;
  end if;

  if p_kind = 'policy' then
    v_oid := pg_catalog.to_regclass(v_definition ->> 'table');
    if v_oid is null then
      return query select 'the policy''s table is missing', format('table %s exists', v_definition ->> 'table'), 'absent', false;
      return;
    end if;
    v_actual := credit_private.policy_definition(v_oid::regclass, v_definition ->> 'policy');
    if v_actual is null then
      return query select 'policy is missing', 'policy exists', 'absent', true;
    elsif v_actual is distinct from v_definition then
      return query select 'policy differs from the package''s definition',
        (select string_agg(format('%s: %s', d.key, d.value), '; ' order by d.key)
         from jsonb_each(v_definition) d where d.value is distinct from v_actual -> d.key),
        (select string_agg(format('%s: %s', d.key, coalesce(v_actual -> d.key, 'null'::jsonb)), '; ' order by d.key)
         from jsonb_each(v_definition) d where d.value is distinct from v_actual -> d.key),
        true;
    end if;
    return;
  end if;

  if p_kind = 'function' then
    v_oid := pg_catalog.to_regprocedure(p_name);
    if v_oid is null then
      return query select 'function is missing', 'function exists', 'absent', false;
      return;
    end if;
    v_flag := (v_definition ->> 'security_definer')::boolean;
    if (select p.prosecdef from pg_catalog.pg_proc p where p.oid = v_oid) <> v_flag then
      return query select 'wrong security mode',
        case when v_flag then 'security definer' else 'security invoker' end,
        case when v_flag then 'security invoker' else 'security definer' end, true;
    end if;
    select c.setting into v_config
    from pg_catalog.pg_proc p, unnest(p.proconfig) as c (setting)
    where p.oid = v_oid and c.setting like 'search\_path=%';
    if v_config is distinct from 'search_path=' || coalesce(nullif(v_definition ->> 'search_path', ''), '""') then
      return query select 'search_path is not pinned',
        'search_path=' || coalesce(nullif(v_definition ->> 'search_path', ''), '""'),
        coalesce(v_config, 'not set (inherits the caller''s)'), true;
    end if;
    foreach v_role in array array['anon', 'authenticated', 'service_role'] loop
      v_flag := (v_definition -> 'executable_by') ? v_role;
      if pg_catalog.has_function_privilege(v_role, v_oid, 'EXECUTE') <> v_flag then
        return query select format('%s %s execute it', v_role, case when v_flag then 'cannot' else 'can' end),
          format('EXECUTE %s %s', case when v_flag then 'granted to' else 'not granted to' end, v_role),
          format('EXECUTE %s %s', case when v_flag then 'not granted to' else 'granted to' end, v_role), true;
      end if;
    end loop;
    if exists (
      select 1 from pg_catalog.pg_proc p, pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
      where p.oid = v_oid and a.grantee = 0
    ) then
      return query select 'PUBLIC can execute it', 'EXECUTE not granted to PUBLIC', 'EXECUTE granted to PUBLIC', true;
    end if;
    return;
  end if;

  if p_kind = 'cron_job' then
    if pg_catalog.to_regclass('cron.job') is null then
      return query select 'pg_cron is not installed', 'extension pg_cron enabled', 'absent', false;
      return;
    end if;
    -- Dynamic: the package must load (and check) where pg_cron is absent.
    execute 'select j.schedule, j.command, j.active from cron.job j where j.jobname = $1 order by j.jobid limit 1'
      into v_schedule, v_command, v_active
      using p_name;
    if v_schedule is null then
      return query select 'cron job is not scheduled', format('scheduled %s', v_definition ->> 'schedule'), 'absent', true;
      return;
    end if;
    if v_schedule <> v_definition ->> 'schedule' or v_command <> v_definition ->> 'command' then
      return query select 'cron job differs from the package''s definition',
        format('schedule %s, command %s', v_definition ->> 'schedule', v_definition ->> 'command'),
        format('schedule %s, command %s', v_schedule, v_command), true;
    end if;
    if not v_active then
      return query select 'cron job is inactive', 'active', 'inactive', true;
    end if;
    return;
  end if;
end;
$$;

revoke execute on function credit_private.expected_object_problems(text, text) from public, anon, authenticated, service_role;

comment on function credit_private.expected_object_problems(text, text) is
  'Compares one expected object with the live catalog and returns one row per difference (problem, expected, actual, whether restore_installation can repair it). No row means the object is exactly as the package expects.';

create function credit_private.installation_problems()
returns table (
  kind text, name text, registered_by text, problem text, expected text, actual text,
  repairable boolean, suggested_action text
)
language sql
stable
security invoker
set search_path = ''
as $$
  select e.kind, e.name, e.registered_by, p.problem, p.expected, p.actual, p.repairable,
    case
      when p.repairable then 'Run public.restore_credit_installation (or public.fix_all_credits), which restores it as the package defines it.'
      when p.problem like 'unexpected policy%' then 'Review this policy: the package defines no such policy; drop it unless you added it on purpose.'
      when p.problem = 'pg_cron is not installed' then 'Enable the pg_cron extension (Dashboard > Database > Extensions), then run public.restore_credit_installation.'
      else format('Re-apply migration %s (supabase db push); a repair cannot recreate a missing %s.', e.registered_by, e.kind)
    end
  from credit_private.expected_object e
    cross join lateral credit_private.expected_object_problems(e.kind, e.name) p
  order by e.kind, e.name, p.problem
$$;

revoke execute on function credit_private.installation_problems() from public, anon, authenticated, service_role;

comment on function credit_private.installation_problems() is
  'Every difference between the expected objects and the live catalog, with a suggested action. Empty when the installation is intact.';
