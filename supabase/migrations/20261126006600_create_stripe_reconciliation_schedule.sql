-- Why: missed webhooks are found only if reconciliation runs without anyone remembering to
-- run it. On hosted Supabase, pg_cron calls the stripe-reconcile function through pg_net
-- with the project URL and service-role key read from Vault at run time (never stored in
-- the job). Locally pg_net and Vault do not exist: the setup function says so and schedules
-- nothing, so the same migration works everywhere. The operator runs it once, as postgres,
-- after storing the two secrets; running it again replaces the job (scheduled by name).

create function credit_private.schedule_stripe_reconciliation(p_schedule text default '*/15 * * * *')
returns text
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_secrets bigint;
begin
  if coalesce(p_schedule, '') !~ '^\S+( \S+){4}$' then
    raise exception 'schedule must be a five-field cron expression, got "%"', p_schedule using errcode = '22023';
  end if;
  if to_regnamespace('cron') is null then
    return 'not scheduled: the pg_cron extension is not enabled';
  end if;
  if to_regnamespace('net') is null or to_regclass('vault.decrypted_secrets') is null then
    return 'not scheduled: pg_net and Vault are required to call the function from the database (run stripe-reconcile from another scheduler instead)';
  end if;

  -- Dynamic SQL with the name passed in: Vault is absent locally, so the relation must not be
  -- resolved when this function is created or checked.
  execute format(
    'select count(*) from %I.%I where name in (''project_url'', ''service_role_key'') and coalesce(decrypted_secret, '''') <> ''''',
    'vault', 'decrypted_secrets'
  ) into v_secrets;
  if v_secrets < 2 then
    return 'not scheduled: store the project_url and service_role_key secrets in Vault first (vault.create_secret)';
  end if;

  perform cron.schedule(
    'stripe-reconcile',
    p_schedule,
    $job$
      select net.http_post(
        url := (select decrypted_secret from vault.decrypted_secrets where name = 'project_url')
               || '/functions/v1/stripe-reconcile',
        headers := jsonb_build_object(
          'Content-Type', 'application/json',
          'Authorization', 'Bearer ' || (select decrypted_secret from vault.decrypted_secrets where name = 'service_role_key')
        ),
        body := '{}'::jsonb,
        timeout_milliseconds := 150000
      )
    $job$
  );
  return format('scheduled: stripe-reconcile runs at "%s"', p_schedule);
end;
$$;

revoke execute on function credit_private.schedule_stripe_reconciliation(text)
  from public, anon, authenticated, service_role;

comment on function credit_private.schedule_stripe_reconciliation(text) is
  'Schedules (or reschedules) the pg_cron job stripe-reconcile, which POSTs to the stripe-reconcile function with the project_url and service_role_key Vault secrets; default every 15 minutes. Returns what it did; schedules nothing, and says why, without pg_cron, pg_net, Vault or the secrets. Run as postgres.';

create function credit_private.unschedule_stripe_reconciliation()
returns boolean
language plpgsql
security invoker
set search_path = ''
as $$
begin
  if to_regnamespace('cron') is null then
    return false;
  end if;
  -- cron.unschedule raises on a missing name (pg_cron 1.4), so look first.
  if exists (select 1 from cron.job j where j.jobname = 'stripe-reconcile') then
    perform cron.unschedule('stripe-reconcile');
    return true;
  end if;
  return false;
end;
$$;

revoke execute on function credit_private.unschedule_stripe_reconciliation()
  from public, anon, authenticated, service_role;

comment on function credit_private.unschedule_stripe_reconciliation() is
  'Removes the stripe-reconcile pg_cron job if it exists; returns whether one was removed. Run as postgres.';
