-- Test: the monitor's privileges (delivery RPCs for service_role only, every table, view and internal function closed to the API roles) and the outbox's delivery contract (claim with a lease, complete with the token, retry with backoff), plus the clean-up.
begin;
select plan(45);

create temp table rpcs (name text, args text[]);
insert into rpcs values
  ('claim_monitor_messages', array['integer', 'integer']),
  ('complete_monitor_message', array['bigint', 'uuid', 'boolean', 'text']),
  ('get_payment_monitor_status', array[]::text[]);

select is_definer('public', r.name, r.args, format('public.%s is SECURITY DEFINER', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'anon', '{}', format('anon cannot execute public.%s', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'authenticated', '{}',
  format('authenticated cannot execute public.%s', r.name)) from rpcs r;
select function_privs_are('public', r.name, r.args, 'service_role', array['EXECUTE'],
  format('service_role can execute public.%s', r.name)) from rpcs r;
select is_empty(
  $$ select e.name, r.role_name from credit_private.expected_object e
       cross join unnest(array['anon', 'authenticated', 'service_role']) as r (role_name)
     where e.registered_by = '20261126005900_register_monitor_expected_objects' and e.kind = 'function'
       and e.name like 'credit_private.%' and has_function_privilege(r.role_name, e.name::regprocedure, 'EXECUTE') $$,
  'no API role may execute an internal function of the monitor');
select is(
  (select count(*) from credit_private.expected_object e
   where e.registered_by = '20261126005900_register_monitor_expected_objects' and e.kind = 'function'
     and e.name like 'credit_private.%'),
  (select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
   where n.nspname = 'credit_private'
     and (p.proname like '%monitor%' or p.proname like '%weekly_report%' or p.proname in
       ('record_stripe_webhook_failure', 'webhook_retry_due_at', 'vault_secrets_present'))),
  'every internal function of the monitor is registered for the installation check');
select is_empty(
  $$ select e.name, r.role_name, p.privilege from credit_private.expected_object e
       cross join unnest(array['anon', 'authenticated', 'service_role']) as r (role_name)
       cross join unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) as p (privilege)
     where e.registered_by = '20261126005900_register_monitor_expected_objects' and e.kind in ('table', 'view')
       and has_table_privilege(r.role_name, e.name::regclass, p.privilege) $$,
  'no API role holds any privilege on the monitor''s tables and views');
select is(
  array(select c.oid::regclass::text from pg_class c
        where c.oid in ('credit_private.monitor_run'::regclass, 'credit_private.monitor_alert'::regclass,
          'credit_private.monitor_outbox'::regclass, 'credit_private.monitor_weekly_report'::regclass,
          'credit_private.stripe_webhook_failure'::regclass)
          and c.relrowsecurity order by 1),
  array['credit_private.monitor_alert', 'credit_private.monitor_outbox', 'credit_private.monitor_run',
        'credit_private.monitor_weekly_report', 'credit_private.stripe_webhook_failure'],
  'row level security is on for every monitor table');
select is_empty(
  $$ select c.oid::regclass from pg_class c
     where c.oid in ('credit_private.monitor_latest_runs'::regclass, 'credit_private.monitor_open_alerts'::regclass,
                     'credit_private.monitor_pending_messages'::regclass)
       and not 'security_invoker=on' = any (coalesce(c.reloptions, '{}')) $$,
  'every monitor view is security_invoker');
select is_empty($$ select * from credit_private.installation_check where not ok and registered_by like '202611260059%' $$,
  'the installation check finds the monitor as registered');

-- Role by role.
delete from credit_private.monitor_outbox;
delete from credit_private.monitor_alert;
select credit_private.queue_monitor_message('alert', 'test:a', null, null, 'first', '{"type": "alert"}');
select credit_private.queue_monitor_message('alert', 'test:b', null, null, 'second', '{"type": "alert"}');
select credit_private.queue_monitor_message('alert', 'test:c', null, null, 'third', '{"type": "alert"}');
create temp table someone as select tests.create_user() as id;

select tests.clear_authentication();
select throws_ok($$ select public.claim_monitor_messages() $$, '42501', null, 'anon cannot claim messages');
select throws_ok($$ select * from credit_private.monitor_latest_runs $$, '42501', null, 'nor read the run history');
select tests.reset_identity();
select tests.authenticate_as((select id from someone));
select throws_ok($$ select public.get_payment_monitor_status() $$, '42501', null, 'authenticated cannot read the monitor status');
select throws_ok($$ select * from credit_private.monitor_pending_messages $$, '42501', null, 'nor the pending messages');
select tests.reset_identity();

-- The delivery contract, as the payment-monitor function (service_role) uses it.
select tests.authenticate_as_service_role();
select is((public.get_payment_monitor_status() ->> 'pending_messages')::bigint, 3::bigint, 'service_role reads the status');
create temp table first_claim as select public.claim_monitor_messages(2, 60) as c;
select is(
  (select array(select m ->> 'title' from jsonb_array_elements(c) m) from first_claim), array['first', 'second'],
  'a claim takes the oldest due messages, up to the limit');
select ok(
  (select (c #>> '{0,claim_token}') is not null and c #>> '{0,claim_token}' = c #>> '{1,claim_token}'
     and (c #>> '{0,attempts}')::integer = 1 from first_claim),
  'with one claim token, counting the attempt');
create temp table second_claim as select public.claim_monitor_messages(20, 60) as c;
select is((select array(select m ->> 'title' from jsonb_array_elements(c) m) from second_claim), array['third'],
  'a concurrent claim never gets a message under lease');
select is((public.claim_monitor_messages() = '[]'::jsonb), true, 'and nothing is left to claim');
select is(
  (public.complete_monitor_message((select (c #>> '{0,id}')::bigint from first_claim), gen_random_uuid(), true) ->> 'applied'),
  'false', 'another token cannot complete a message');
select is(
  (public.complete_monitor_message((select (c #>> '{0,id}')::bigint from first_claim),
     (select (c #>> '{0,claim_token}')::uuid from first_claim), true) - 'next_attempt_at'),
  jsonb_build_object('id', (select (c #>> '{0,id}')::bigint from first_claim), 'applied', true, 'status', 'sent', 'attempts', 1),
  'its own token marks it sent');
select is(
  (public.complete_monitor_message((select (c #>> '{0,id}')::bigint from first_claim),
     (select (c #>> '{0,claim_token}')::uuid from first_claim), true) ->> 'applied'),
  'false', 'once');
create temp table failed as
select public.complete_monitor_message((select (c #>> '{1,id}')::bigint from first_claim),
  (select (c #>> '{1,claim_token}')::uuid from first_claim), false, 'Slack answered 500') as r;
select is(
  (select row(r ->> 'status', r ->> 'attempts', (r ->> 'next_attempt_at')::timestamptz)::text from failed),
  row('pending', '1', now() + interval '1 minute')::text, 'a failed delivery stays pending, due again after a minute');
select is(public.claim_monitor_messages(), '[]'::jsonb, 'and is not claimed again before then');
select tests.reset_identity();
select is(
  (select row(last_error, claim_token, claimed_until)::text from credit_private.monitor_outbox where title = 'second'),
  row('Slack answered 500', null, null)::text, 'the error is kept and the lease released');
update credit_private.monitor_outbox set next_attempt_at = now() - interval '1 second' where title = 'second';
update credit_private.monitor_outbox set claimed_until = now() - interval '1 second' where title = 'third';
select tests.authenticate_as_service_role();
create temp table retry_claim as select public.claim_monitor_messages(20, 60) as c;
select is(
  (select array(select row(m ->> 'title', m ->> 'attempts')::text from jsonb_array_elements(c) m) from retry_claim),
  array[row('second', '2')::text, row('third', '2')::text],
  'once due, it is claimed again; so is a message whose lease ran out');
select is(
  (public.complete_monitor_message((select (c #>> '{0,id}')::bigint from second_claim),
     (select (c #>> '{0,claim_token}')::uuid from second_claim), true) ->> 'applied'),
  'false', 'the claim whose lease ran out can no longer complete it');
select is(
  (public.complete_monitor_message((select (c #>> '{0,id}')::bigint from retry_claim),
     (select (c #>> '{0,claim_token}')::uuid from retry_claim), false, 'again') ->> 'next_attempt_at')::timestamptz,
  now() + interval '2 minutes', 'a second failure waits two minutes');
select throws_ok($$ select public.claim_monitor_messages(0) $$, '22023', null, 'a claim takes 1 to 100 messages');
select throws_ok($$ select public.claim_monitor_messages(1, 5) $$, '22023', null, 'and a lease of 10 s to an hour');
select throws_ok($$ select public.complete_monitor_message(1, null, true) $$, '22023', null, 'completing needs the token');
select throws_ok($$ select * from credit_private.monitor_outbox $$, '42501', null, 'service_role cannot read the outbox directly');
select tests.reset_identity();

-- The clean-up keeps what is recent or still open, deletes the rest.
update credit_private.settings set monitor_history_retention = '30 days', cron_history_retention = '7 days';
insert into credit_private.monitor_run (started_at, finished_at, status) values
  (now() - interval '31 days', now() - interval '31 days', 'ok'), (now() - interval '29 days', now() - interval '29 days', 'ok');
insert into credit_private.monitor_alert (fingerprint, kind, category, severity, status, signature, summary, resolved_at, first_seen_at)
values ('t540:old-resolved', 'threshold', 'x', 'warning', 'resolved', 's', 's', now() - interval '31 days', now() - interval '40 days'),
       ('t540:old-open', 'threshold', 'x', 'warning', 'open', 's', 's', null, now() - interval '40 days');
update credit_private.monitor_outbox set status = 'sent', sent_at = now() - interval '31 days' where title = 'first';
update credit_private.monitor_outbox set created_at = now() - interval '40 days' where title = 'second';
insert into credit_private.stripe_webhook_failure (event_id, event_type, attempt, failed_at) values
  ('evt_t540_old', 'x', 1, now() - interval '31 days'), ('evt_t540_new', 'x', 1, now() - interval '1 day');
insert into cron.job_run_details (jobid, runid, status, start_time, end_time) values
  (0, -540, 'succeeded', now() - interval '8 days', now() - interval '8 days'),
  (0, -541, 'succeeded', now() - interval '6 days', now() - interval '6 days');
create temp table cleanup as select credit_private.clean_up_monitor_history() as r;
select ok(
  (select (r ->> 'monitor_runs')::bigint >= 1 and (r ->> 'resolved_alerts')::bigint >= 1 and (r ->> 'sent_messages')::bigint >= 1
     and (r ->> 'webhook_failures')::bigint >= 1 and (r ->> 'cron_job_run_details')::bigint >= 1 from cleanup),
  'the clean-up reports what it deleted');
select ok(
  not exists (select 1 from credit_private.monitor_run where started_at < now() - interval '30 days')
  and exists (select 1 from credit_private.monitor_run where started_at = now() - interval '29 days'),
  'runs older than the retention are deleted, newer ones kept');
select is(
  array(select fingerprint from credit_private.monitor_alert where fingerprint like 't540:%' order by 1),
  array['t540:old-open'], 'old resolved alerts are deleted; an open one never is');
select is(
  array(select title from credit_private.monitor_outbox order by id), array['second', 'third'],
  'old sent messages are deleted; pending ones never are');
select is(
  array(select runid from cron.job_run_details where runid in (-540, -541)), array[-541::bigint],
  'pg_cron''s own history older than cron_history_retention is deleted');

select * from finish();
rollback;
