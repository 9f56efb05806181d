-- Why: a migration that creates an object the package relies on must also say how that
-- object must look, in the same place, or the installation check drifts from the code. These
-- functions register an expectation (idempotently, by kind and name) and, except for cron
-- jobs, verify it against the live catalog at once, so a wrong registration fails the
-- migration instead of raising a false alarm in production.

create function credit_private.register_expected_object(
  p_kind text,
  p_name text,
  p_definition jsonb,
  p_registered_by text,
  p_verify boolean
)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_problems text;
begin
  if coalesce(btrim(p_registered_by), '') = '' then
    raise exception 'registered_by (the migration registering the object) is required' using errcode = '22023';
  end if;

  insert into credit_private.expected_object (kind, name, definition, registered_by)
  values (p_kind, p_name, p_definition, p_registered_by)
  on conflict (kind, name) do update
  set definition = excluded.definition, registered_by = excluded.registered_by, registered_at = now();

  if p_verify then
    select string_agg(format('%s (expected %s, actual %s)', p.problem, p.expected, p.actual), '; ')
    into v_problems
    from credit_private.expected_object_problems(p_kind, p_name) p;
    if v_problems is not null then
      raise exception 'expected % % does not match the live catalog: %', p_kind, p_name, v_problems
        using errcode = '55000';
    end if;
  end if;
end;
$$;

revoke execute on function credit_private.register_expected_object(text, text, jsonb, text, boolean)
  from public, anon, authenticated, service_role;

comment on function credit_private.register_expected_object(text, text, jsonb, text, boolean) is
  'Inserts or replaces one expected object; with p_verify, raises 55000 unless the live catalog already matches it.';

create function credit_private.expect_schema(p_schema text, p_usage text[], p_registered_by text)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  if not coalesce(p_usage, '{}') <@ array['anon', 'authenticated', 'service_role'] then
    raise exception 'usage may name anon, authenticated and service_role only' using errcode = '22023';
  end if;
  perform credit_private.register_expected_object(
    'schema', p_schema, jsonb_build_object('usage', to_jsonb(coalesce(p_usage, '{}'))), p_registered_by, true
  );
end;
$$;

revoke execute on function credit_private.expect_schema(text, text[], text) from public, anon, authenticated, service_role;

comment on function credit_private.expect_schema(text, text[], text) is
  'Registers a schema on which exactly the given API roles (of anon, authenticated, service_role) have USAGE and none has CREATE; verified at once.';

create function credit_private.expect_table(p_table regclass, p_privileges jsonb, p_registered_by text)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  perform credit_private.register_expected_object(
    'table', p_table::text,
    jsonb_build_object('rls', true, 'privileges', credit_private.normalize_privileges(p_privileges)),
    p_registered_by, true
  );
end;
$$;

revoke execute on function credit_private.expect_table(regclass, jsonb, text) from public, anon, authenticated, service_role;

comment on function credit_private.expect_table(regclass, jsonb, text) is
  'Registers a table that has row level security enabled, exactly the given privileges for anon, authenticated and service_role (e.g. {"authenticated": ["SELECT"]}), none for PUBLIC, and only registered policies; verified at once.';

create function credit_private.expect_view(p_view regclass, p_privileges jsonb, p_registered_by text)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  perform credit_private.register_expected_object(
    'view', p_view::text,
    jsonb_build_object('security_invoker', true, 'privileges', credit_private.normalize_privileges(p_privileges)),
    p_registered_by, true
  );
end;
$$;

revoke execute on function credit_private.expect_view(regclass, jsonb, text) from public, anon, authenticated, service_role;

comment on function credit_private.expect_view(regclass, jsonb, text) is
  'Registers a security_invoker view with exactly the given privileges for anon, authenticated and service_role and none for PUBLIC; verified at once.';

create function credit_private.expect_policy(p_table regclass, p_policy text, p_registered_by text)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_definition jsonb := credit_private.policy_definition(p_table, p_policy);
begin
  if v_definition is null then
    raise exception 'policy "%" on % does not exist; create it before registering it', p_policy, p_table
      using errcode = '42704';
  end if;
  perform credit_private.register_expected_object(
    'policy', format('%s on %s', quote_ident(p_policy), p_table::text), v_definition, p_registered_by, true
  );
end;
$$;

revoke execute on function credit_private.expect_policy(regclass, text, text) from public, anon, authenticated, service_role;

comment on function credit_private.expect_policy(regclass, text, text) is
  'Registers an existing policy exactly as it is now defined (command, roles, permissive, using, with check), so that a dropped or altered policy is found and restored to this definition.';

create function credit_private.expect_function(
  p_function regprocedure,
  p_security_definer boolean,
  p_executable_by text[],
  p_registered_by text
)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  if p_security_definer is null then
    raise exception 'p_security_definer is required' using errcode = '22023';
  end if;
  if not coalesce(p_executable_by, '{}') <@ array['anon', 'authenticated', 'service_role'] then
    raise exception 'executable_by may name anon, authenticated and service_role only' using errcode = '22023';
  end if;
  perform credit_private.register_expected_object(
    'function', p_function::text,
    jsonb_build_object(
      'security_definer', p_security_definer,
      'search_path', '',
      'executable_by', to_jsonb(array(select distinct r from unnest(coalesce(p_executable_by, '{}')) r order by r))
    ),
    p_registered_by, true
  );
end;
$$;

revoke execute on function credit_private.expect_function(regprocedure, boolean, text[], text)
  from public, anon, authenticated, service_role;

comment on function credit_private.expect_function(regprocedure, boolean, text[], text) is
  'Registers a function that exists, is SECURITY DEFINER or INVOKER as given, pins search_path to the empty string, and is executable by exactly the given API roles (never PUBLIC); verified at once.';

create function credit_private.expect_cron_job(p_job_name text, p_schedule text, p_command text, p_registered_by text)
returns void
language plpgsql
security invoker
set search_path = ''
as $$
begin
  if coalesce(btrim(p_job_name), '') = '' or coalesce(btrim(p_schedule), '') = '' or coalesce(btrim(p_command), '') = '' then
    raise exception 'job name, schedule and command are required' using errcode = '22023';
  end if;
  -- Not verified: the job may be registered before pg_cron is enabled or the job scheduled;
  -- the installation check reports it and restore_credit_installation schedules it.
  perform credit_private.register_expected_object(
    'cron_job', p_job_name,
    jsonb_build_object('schedule', p_schedule, 'command', p_command, 'active', true),
    p_registered_by, false
  );
end;
$$;

revoke execute on function credit_private.expect_cron_job(text, text, text, text) from public, anon, authenticated, service_role;

comment on function credit_private.expect_cron_job(text, text, text, text) is
  'Registers a pg_cron job (by name, owned by postgres) that must be scheduled with this schedule and command and be active. Not verified at registration; restore_credit_installation schedules it with cron.schedule.';
