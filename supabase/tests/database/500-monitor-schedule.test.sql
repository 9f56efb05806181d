-- Test: the monitor's pg_cron setup schedules exactly its jobs by name, registers them for the installation check, is idempotent, repairs a changed job, adds the pg_net delivery job only with pg_net, Vault and its secrets, and unschedules cleanly.
begin;
select plan(21);

-- Everything the setup could change: the cron jobs and their registrations.
create function pg_temp.cron_state()
returns text
language sql
as $$
  select md5(concat_ws('|',
    (select string_agg(concat_ws(' ', j.jobid, j.jobname, j.schedule, j.command, j.active, j.username, j.database), ','
       order by j.jobid) from cron.job j),
    (select string_agg(concat_ws(' ', e.kind, e.name, e.definition, e.registered_by, e.registered_at), ','
       order by e.kind, e.name) from credit_private.expected_object e)))
$$;

create temp table expected_jobs (jobname text primary key, schedule text, command text);
insert into expected_jobs values
  ('payment-monitor', '*/15 * * * *', 'select credit_private.run_monitor()'),
  ('payment-monitor-weekly-report', '0 * * * *', 'select credit_private.produce_weekly_report_if_due()'),
  ('payment-monitor-cleanup', '17 3 * * *', 'select credit_private.clean_up_monitor_history()');

-- The migration ran the setup: exactly these jobs, active, owned by postgres, in this database.
select set_eq(
  $$ select j.jobname::text, j.schedule, j.command from cron.job j where j.jobname like 'payment-monitor%' $$,
  $$ select * from expected_jobs $$,
  'the migration scheduled exactly the monitor, the weekly report and the clean-up (no delivery job without pg_net)');
select ok(
  (select bool_and(j.active and j.username = 'postgres' and j.database = 'postgres')
   from cron.job j where j.jobname like 'payment-monitor%'),
  'the jobs are active and run as postgres in this database');
select set_eq(
  $$ select e.name, e.definition ->> 'schedule' as schedule, e.definition ->> 'command' as command
     from credit_private.expected_object e
     where e.kind = 'cron_job' and e.name like 'payment-monitor%' $$,
  $$ select * from expected_jobs $$,
  'each job is registered as an expected cron job with its schedule and command');
select is_empty(
  $$ select * from credit_private.installation_check i where i.name like 'payment-monitor%' and not i.ok $$,
  'the installation check finds the jobs as registered');

-- Running it again changes nothing.
create temp table before_state as select pg_temp.cron_state() as s;
create temp table rerun as select credit_private.setup_payment_monitor_schedule() as r;
select is(pg_temp.cron_state(), (select s from before_state), 'running the setup again changes nothing');
select set_eq(
  $$ select j ->> 'job' as job, j ->> 'status' as status from rerun, jsonb_array_elements(r -> 'jobs') j $$,
  $$ values ('payment-monitor', 'unchanged'), ('payment-monitor-weekly-report', 'unchanged'),
            ('payment-monitor-cleanup', 'unchanged'), ('payment-monitor-deliver', 'skipped') $$,
  'and says so for each job; the delivery job is skipped');
select matches(
  (select j ->> 'reason' from rerun, jsonb_array_elements(r -> 'jobs') j where j ->> 'job' = 'payment-monitor-deliver'),
  '^pg_net and Vault are not available', 'the delivery job says why it is skipped');

-- A job changed, paused or unscheduled by hand is found by the installation check and put back.
select cron.alter_job((select jobid from cron.job where jobname = 'payment-monitor'), schedule => '0 0 * * *', active => false);
select cron.unschedule('payment-monitor-cleanup');
select set_eq(
  $$ select i.name, unnest(i.problems) as problem from credit_private.installation_check i where i.name like 'payment-monitor%' $$,
  $$ values
    ('payment-monitor', 'cron job differs from the package''s definition (expected schedule */15 * * * *, command select credit_private.run_monitor(), actual schedule 0 0 * * *, command select credit_private.run_monitor())'),
    ('payment-monitor', 'cron job is inactive (expected active, actual inactive)'),
    ('payment-monitor-cleanup', 'cron job is not scheduled (expected scheduled 17 3 * * *, actual absent)') $$,
  'the installation check names the altered, paused and missing jobs');
select set_eq(
  $$ select j ->> 'job' as job, j ->> 'status' as status from jsonb_array_elements(credit_private.setup_payment_monitor_schedule() -> 'jobs') j $$,
  $$ values ('payment-monitor', 'scheduled'), ('payment-monitor-weekly-report', 'unchanged'),
            ('payment-monitor-cleanup', 'scheduled'), ('payment-monitor-deliver', 'skipped') $$,
  'the setup schedules again exactly the two that differ');
select set_eq(
  $$ select j.jobname::text, j.schedule, j.command from cron.job j where j.jobname like 'payment-monitor%' and j.active $$,
  $$ select * from expected_jobs $$,
  'and they are as defined, active');
select cron.unschedule('payment-monitor-weekly-report');
select public.restore_credit_installation(dry_run => false, actor => 'test-500', reason => 'restore covers the jobs');
select is(
  (select row(j.schedule, j.command, j.active)::text from cron.job j where j.jobname = 'payment-monitor-weekly-report'),
  row('0 * * * *', 'select credit_private.produce_weekly_report_if_due()', true)::text,
  'restore_credit_installation schedules a missing monitor job too');

-- With pg_net and Vault (hosted Supabase), stand-ins created for this transaction only.
create schema net;
create function net.http_post(url text, headers jsonb, body jsonb, timeout_milliseconds integer)
returns bigint language sql as $$ select 1::bigint $$;
create schema vault;
create table vault.decrypted_secrets (name text, decrypted_secret text);
select is(
  (select j ->> 'reason' from jsonb_array_elements(credit_private.setup_payment_monitor_schedule() -> 'jobs') j
   where j ->> 'job' = 'payment-monitor-deliver'),
  'store the project_url and service_role_key secrets in Vault (vault.create_secret), then run this again',
  'with pg_net and Vault but no secrets, the delivery job waits for them');
select is_empty($$ select 1 from cron.job where jobname = 'payment-monitor-deliver' $$, 'and is not scheduled');
insert into vault.decrypted_secrets values ('project_url', 'https://ref.supabase.co'), ('service_role_key', 'a-key');
select is(
  (select j ->> 'status' from jsonb_array_elements(credit_private.setup_payment_monitor_schedule() -> 'jobs') j
   where j ->> 'job' = 'payment-monitor-deliver'),
  'scheduled', 'with the secrets stored, the setup schedules the delivery job');
select is(
  (select j.schedule from cron.job j where j.jobname = 'payment-monitor-deliver'),
  '1,16,31,46 * * * *', 'one minute after each monitor run');
select ok(
  (select j.command like 'select net.http_post(%'
     and j.command like '%where name = ''project_url'') || ''/functions/v1/payment-monitor''%'
     and j.command like '%''Bearer '' || (select decrypted_secret from vault.decrypted_secrets where name = ''service_role_key'')%'
     and j.command not like '%a-key%' and j.command not like '%ref.supabase.co%'
   from cron.job j where j.jobname = 'payment-monitor-deliver'),
  'it POSTs to the payment-monitor function with the key read from Vault at run time, never stored in the job');
select lives_ok(
  (select j.command from cron.job j where j.jobname = 'payment-monitor-deliver'),
  'the delivery command runs as scheduled');
select is(
  (select e.definition ->> 'command' from credit_private.expected_object e where e.kind = 'cron_job' and e.name = 'payment-monitor-deliver'),
  (select j.command from cron.job j where j.jobname = 'payment-monitor-deliver'),
  'and is registered for the installation check');
create temp table with_net as select pg_temp.cron_state() as s;
select credit_private.setup_payment_monitor_schedule();
select is(pg_temp.cron_state(), (select s from with_net), 'with pg_net too, running the setup again changes nothing');

-- Unscheduling removes the jobs and their registrations; the setup brings them back.
select is(
  (select array(select jsonb_array_elements_text(credit_private.unschedule_payment_monitor() -> 'unscheduled') order by 1)),
  array['payment-monitor', 'payment-monitor-cleanup', 'payment-monitor-deliver', 'payment-monitor-weekly-report'],
  'unschedule_payment_monitor removes every job');
select is_empty(
  $$ select 1 from cron.job j where j.jobname like 'payment-monitor%'
     union all select 1 from credit_private.expected_object e where e.kind = 'cron_job' and e.name like 'payment-monitor%' $$,
  'and their registrations, so the installation check does not miss them');

select * from finish();
rollback;
