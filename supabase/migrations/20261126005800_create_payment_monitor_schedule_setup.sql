-- Why: the guide's crontab, as pg_cron jobs scheduled by name from one idempotent setup
-- function (scheduling a name again replaces it; running the setup again changes nothing).
-- Every job is registered with credit_private.expect_cron_job, so the installation check
-- reports a job that was unscheduled, altered or paused, and restore_credit_installation
-- (or this setup) schedules it again. The job that calls the payment-monitor function to
-- deliver Slack messages follows Supabase's documented pattern, as the stripe-reconcile
-- schedule does (migration 20261126006600): pg_net's net.http_post with the project URL and
-- the service-role key read from Vault at run time (secrets project_url and
-- service_role_key), never stored in the job. Where pg_net or Vault is missing (the local
-- stack) that job is neither scheduled nor registered, the rest works, and `npm start` calls
-- the function on the same schedule instead.

create function credit_private.payment_monitor_jobs()
returns table (job_name text, schedule text, command text, needs_pg_net boolean, description text)
language sql
immutable
security invoker
set search_path = ''
as $$
  select j.job_name, j.schedule, j.command, j.needs_pg_net, j.description
  from (values
    ('payment-monitor', '*/15 * * * *', 'select credit_private.run_monitor()', false,
     'every 15 minutes: check, repair, alert, one run row'),
    -- pg_cron runs in UTC: hourly, and the function decides whether it is the configured
    -- weekday and hour in settings.report_time_zone.
    ('payment-monitor-weekly-report', '0 * * * *', 'select credit_private.produce_weekly_report_if_due()', false,
     'hourly: produces the weekly report when it is due in settings.report_time_zone'),
    ('payment-monitor-cleanup', '17 3 * * *', 'select credit_private.clean_up_monitor_history()', false,
     'daily at 03:17 UTC: deletes history older than the retention settings, and old cron.job_run_details'),
    -- One minute after each monitor run (and after the hourly report), so new alerts go out.
    ('payment-monitor-deliver', '1,16,31,46 * * * *',
     $job$select net.http_post(
  url := (select decrypted_secret from vault.decrypted_secrets where name = 'project_url') || '/functions/v1/payment-monitor',
  headers := jsonb_build_object(
    'Content-Type', 'application/json',
    'Authorization', 'Bearer ' || (select decrypted_secret from vault.decrypted_secrets where name = 'service_role_key')
  ),
  body := '{}'::jsonb,
  timeout_milliseconds := 60000
)$job$, true,
     'one minute after each monitor run: POSTs to the payment-monitor function, which sends pending messages to Slack')
  ) as j (job_name, schedule, command, needs_pg_net, description)
$$;

revoke execute on function credit_private.payment_monitor_jobs() from public, anon, authenticated, service_role;

comment on function credit_private.payment_monitor_jobs() is
  'The pg_cron jobs of the payment monitor, by name, with their schedule (UTC) and exact command: payment-monitor (*/15), payment-monitor-weekly-report (hourly), payment-monitor-cleanup (daily), and payment-monitor-deliver (pg_net + Vault only).';

-- Whether Vault holds a non-empty secret under each name. Dynamic SQL: Vault is absent
-- locally, so the relation must not be resolved when this function is created or checked.
create function credit_private.vault_secrets_present(p_names text[])
returns boolean
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_found bigint;
begin
  if pg_catalog.to_regclass('vault.decrypted_secrets') is null then
    return false;
  end if;
  execute format('select count(distinct name) from %I.%I where name = any ($1) and coalesce(decrypted_secret, '''') <> ''''',
    'vault', 'decrypted_secrets')
    into v_found
    using p_names;
  return v_found = cardinality(p_names);
end;
$$;

revoke execute on function credit_private.vault_secrets_present(text[]) from public, anon, authenticated, service_role;

comment on function credit_private.vault_secrets_present(text[]) is
  'Whether Vault exists and holds a non-empty secret under every given name (vault.decrypted_secrets); false without Vault.';

create function credit_private.setup_payment_monitor_schedule()
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  c_registered_by constant text := '20261126005950_schedule_payment_monitor';
  v_job record;
  v_definition jsonb;
  v_status text;
  v_jobs jsonb := '[]'::jsonb;
begin
  for v_job in select * from credit_private.payment_monitor_jobs() j order by j.job_name loop
    if v_job.needs_pg_net and (pg_catalog.to_regnamespace('net') is null
                               or pg_catalog.to_regclass('vault.decrypted_secrets') is null) then
      v_jobs := v_jobs || jsonb_build_object('job', v_job.job_name, 'status', 'skipped',
        'reason', 'pg_net and Vault are not available: deliver with another scheduler (npm start does it locally)');
      continue;
    end if;
    if v_job.needs_pg_net and not credit_private.vault_secrets_present(array['project_url', 'service_role_key']) then
      v_jobs := v_jobs || jsonb_build_object('job', v_job.job_name, 'status', 'skipped',
        'reason', 'store the project_url and service_role_key secrets in Vault (vault.create_secret), then run this again');
      continue;
    end if;

    -- Registered only when it differs, so that running this again changes nothing.
    v_definition := jsonb_build_object('schedule', v_job.schedule, 'command', v_job.command, 'active', true);
    if not exists (
      select 1 from credit_private.expected_object e
      where e.kind = 'cron_job' and e.name = v_job.job_name and e.definition = v_definition
    ) then
      perform credit_private.expect_cron_job(v_job.job_name, v_job.schedule, v_job.command, c_registered_by);
    end if;

    if pg_catalog.to_regclass('cron.job') is null then
      v_status := 'registered; not scheduled: enable pg_cron, then run this again';
    elsif exists (select 1 from credit_private.expected_object_problems('cron_job', v_job.job_name)) then
      -- Schedules it by name (replacing a job of that name) and makes it active.
      perform credit_private.restore_expected_object('cron_job', v_job.job_name);
      v_status := 'scheduled';
    else
      v_status := 'unchanged';
    end if;
    v_jobs := v_jobs || jsonb_build_object('job', v_job.job_name, 'status', v_status, 'schedule', v_job.schedule);
  end loop;
  return jsonb_build_object('jobs', v_jobs);
end;
$$;

revoke execute on function credit_private.setup_payment_monitor_schedule() from public, anon, authenticated, service_role;

comment on function credit_private.setup_payment_monitor_schedule() is
  'Schedules the payment monitor''s pg_cron jobs (credit_private.payment_monitor_jobs) by name and registers each as an expected cron job; the delivery job only where pg_net, Vault and its two secrets exist. Idempotent: a job already as defined is left untouched (status unchanged); an altered, paused or missing one is scheduled again. Returns {jobs: [{job, status, schedule | reason}]}. Run as postgres; run again after storing the Vault secrets.';

create function credit_private.unschedule_payment_monitor()
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_job record;
  v_removed jsonb := '[]'::jsonb;
begin
  for v_job in select j.job_name from credit_private.payment_monitor_jobs() j order by j.job_name loop
    delete from credit_private.expected_object e where e.kind = 'cron_job' and e.name = v_job.job_name;
    -- cron.unschedule raises on a missing name (pg_cron 1.4), so look first.
    if pg_catalog.to_regclass('cron.job') is not null
       and exists (select 1 from cron.job j where j.jobname = v_job.job_name) then
      perform cron.unschedule(v_job.job_name);
      v_removed := v_removed || to_jsonb(v_job.job_name);
    end if;
  end loop;
  return jsonb_build_object('unscheduled', v_removed);
end;
$$;

revoke execute on function credit_private.unschedule_payment_monitor() from public, anon, authenticated, service_role;

comment on function credit_private.unschedule_payment_monitor() is
  'Stops the payment monitor: unschedules its pg_cron jobs that exist and removes them from the expected objects (else the installation check would report them missing). Returns {unscheduled: [names]}. setup_payment_monitor_schedule brings them back.';
