-- Test: a monitor run repairs what the settings allow (and not what is switched off) through the audited repair runner, retries failed webhooks with backoff up to the maximum, records one run row, and keeps the row (with the error) when a step fails.
begin;
select plan(41);

-- A paid recharge whose credits never reached the ledger nor the balance (the guide's orphan).
create function pg_temp.orphan(p_user_id uuid, p_session text, p_credits bigint)
returns uuid
language sql
as $$
  insert into public.credit_recharge (user_id, credits, amount_cents, status, completed_at, stripe_checkout_session_id)
  values (p_user_id, p_credits, p_credits, 'completed', now(), p_session)
  returning id
$$;

create function pg_temp.failed_event(p_event_id text, p_payload jsonb, p_attempts bigint, p_code text, p_last_attempt interval)
returns void
language sql
as $$
  insert into credit_private.stripe_webhook_event
    (event_id, type, payload, status, attempts, last_error, last_error_code, received_at, updated_at)
  values (p_event_id, p_payload ->> 'type', p_payload, 'failed', p_attempts, 'failed in the test', p_code,
    now() - interval '2 hours', now() - p_last_attempt)
$$;

-- now() stands still in a test: each run looks again at everything since the test began.
create function pg_temp.run() returns jsonb language sql as $$
  update credit_private.check_watermark set checked_through = now() - interval '1 second' where checker = 'monitor';
  select credit_private.run_monitor(true);
$$;

-- A known starting point: the monitor looks only at what this test changes.
update credit_private.settings set monitor_enabled = true, auto_fix_orphaned_recharges = true,
  auto_recompute_balances = false, auto_retry_failed_webhooks = true, auto_restore_installation = false,
  webhook_retry_base_delay = '5 minutes', webhook_retry_max_delay = '6 hours', webhook_retry_max_attempts = 3,
  monitor_repair_batch = 500, incremental_overlap = '0', alert_reminder_interval = '6 hours',
  alert_threshold_orphaned_recharges = 3, alert_threshold_balance_mismatches = 3, alert_threshold_failed_webhooks = 5,
  alert_threshold_dangling_recharge_entries = 1, alert_threshold_stuck_recharges = 10,
  alert_threshold_negative_balances = 10, alert_threshold_installation = 1;
delete from credit_private.monitor_outbox;
delete from credit_private.monitor_alert;
delete from credit_private.stripe_webhook_event where status in ('received', 'failed', 'deferred');
insert into credit_private.check_watermark (checker, checked_through, last_run_at)
values ('monitor', now() - interval '1 second', now())
on conflict (checker) do update set checked_through = excluded.checked_through;

create temp table ids (name text primary key, id uuid);
insert into ids select n, tests.create_user() from unnest(array['alice', 'bob', 'dave', 'erin', 'frank', 'grace',
  'heidi', 'ivan', 'judy']) n;
create function pg_temp.id(p_name text) returns uuid language sql as $$ select id from ids where name = p_name $$;

-- alice: an orphan. bob: a balance edited by hand. dave: a failed event whose retry is due.
-- erin: failed once a minute ago (backoff not over). frank: retries exhausted. grace: CR003.
insert into ids values ('r_alice', pg_temp.orphan(pg_temp.id('alice'), 'cs_t510_alice', 100));
select tests.pay(pg_temp.id('bob'), 'cs_t510_bob', 50);
update public.user_credit_balance set balance = balance + 7 where user_id = pg_temp.id('bob');
select pg_temp.failed_event('evt_t510_dave',
  tests.stripe_event('evt_t510_dave', 'checkout.session.completed', tests.paid_session('cs_t510_dave', pg_temp.id('dave'), '30')),
  1, 'XX000', '10 minutes');
select pg_temp.failed_event('evt_t510_erin',
  tests.stripe_event('evt_t510_erin', 'checkout.session.completed', tests.paid_session('cs_t510_erin', pg_temp.id('erin'), '5')),
  1, 'XX000', '1 minute');
select pg_temp.failed_event('evt_t510_frank',
  tests.stripe_event('evt_t510_frank', 'checkout.session.completed', tests.paid_session('cs_t510_frank', pg_temp.id('frank'), '8')),
  3, 'XX000', '1 day');
select pg_temp.failed_event('evt_t510_grace',
  tests.stripe_event('evt_t510_grace', 'checkout.session.completed', tests.paid_session('cs_t510_grace', pg_temp.id('grace'), '9')),
  1, 'CR003', '1 day');

create temp table run1 as select pg_temp.run() as r;
create temp table row1 as select m.* from credit_private.monitor_run m where m.id = (select (r ->> 'run_id')::bigint from run1);

select is((select status from row1), 'problems', 'run 1 ends with problems left');
select is((select findings ->> 'orphaned_recharges' from row1), '1', 'it found the orphan');
select is((select finding_ids -> 'orphaned_recharges' from row1), jsonb_build_array(pg_temp.id('r_alice')),
  'and names it in the run row');
select is((select findings ->> 'balance_mismatches' from row1), '1', 'and the edited balance');
select is(
  (select (ledger_balance, cached_balance) from credit_private.balance_mismatches_for(array[pg_temp.id('alice')])),
  null, 'the orphan was back-filled: alice''s balance agrees with her ledger');
select is(
  (select row(t.amount, t.type, b.balance, b.total_recharged)::text
   from public.credit_transaction t join public.user_credit_balance b on b.user_id = t.user_id
   where t.recharge_id = pg_temp.id('r_alice')),
  row(100, 'recharge', 100, 100)::text, 'with one recharge entry of 100 credits');
select is(
  (select balance from public.user_credit_balance where user_id = pg_temp.id('bob')), 57::bigint,
  'the balance mismatch is left alone: auto_recompute_balances is off');
select is(
  (select row(status, attempts)::text from credit_private.stripe_webhook_event where event_id = 'evt_t510_dave'),
  row('processed', 2)::text, 'the failed event due for a retry was retried and processed');
select is((select balance from public.user_credit_balance where user_id = pg_temp.id('dave')), 30::bigint,
  'and credited dave once');
select is(
  (select array_agg(row(event_id, status, attempts)::text order by event_id) from credit_private.stripe_webhook_event
   where event_id in ('evt_t510_erin', 'evt_t510_frank', 'evt_t510_grace')),
  array[row('evt_t510_erin', 'failed', 1)::text, row('evt_t510_frank', 'failed', 3)::text, row('evt_t510_grace', 'failed', 1)::text],
  'backoff not over, retries exhausted and needs-a-human events are not retried');
select set_eq(
  $$ select x ->> 'category' as c, x ->> 'target' as t, x ->> 'outcome' as o from row1, jsonb_array_elements(repairs) x $$,
  $$ values ('orphaned_recharges', (select id from ids where name = 'r_alice')::text, 'repaired'),
            ('failed_webhooks', 'evt_t510_dave', 'repaired') $$,
  'the run row lists exactly the repairs made');
select is((select repaired from row1),
  '{"installation": 0, "failed_webhooks": 1, "stuck_recharges": 0, "negative_balances": 0, "balance_mismatches": 0, "orphaned_recharges": 1, "dangling_recharge_entries": 0}'::jsonb,
  'repaired counts per category');
select is((select remaining from row1),
  '{"installation": 0, "failed_webhooks": 3, "stuck_recharges": 0, "negative_balances": 0, "balance_mismatches": 1, "orphaned_recharges": 0, "dangling_recharge_entries": 0}'::jsonb,
  'remaining counts per category');
select ok((select finished_at >= started_at and duration = finished_at - started_at and errors = '[]' from row1),
  'the row has start, finish, duration and no errors');
select set_eq(
  $$ select l.action, l.target_id, l.actor, l.dry_run from credit_private.repair_log l
     where l.reason = format('monitor run %s: automatic repair (settings.auto_*)', (select id from row1)) $$,
  $$ values ('fix_orphaned_recharges', (select id from ids where name = 'r_alice')::text, 'payment-monitor', false),
            ('retry_failed_webhooks', 'evt_t510_dave', 'payment-monitor', false) $$,
  'every repair wrote its audit row, actor payment-monitor, reason naming the run');
select set_eq(
  $$ select a ->> 'fingerprint' as f, a ->> 'outcome' as o from row1, jsonb_array_elements(alerts) a $$,
  $$ values ('unrepaired:balance_mismatches', 'new'), ('unrepaired:failed_webhooks', 'new') $$,
  'it raised an alert for what it could not repair');
select set_eq(
  $$ select r ->> 'id' as id, r ->> 'reason' as reason from credit_private.monitor_alert a, jsonb_array_elements(a.details -> 'rows') r
     where a.fingerprint = 'unrepaired:failed_webhooks' $$,
  $$ values ('evt_t510_frank', 'retries exhausted: 3 attempts (settings.webhook_retry_max_attempts = 3)'),
            ('evt_t510_grace', 'needs a human: SQLSTATE CR003 is in settings.retry_skip_error_codes') $$,
  'a first failure waiting for its retry does not alert; exhausted and needs-a-human events do, saying why');
select is(
  (select r ->> 'reason' from credit_private.monitor_alert a, jsonb_array_elements(a.details -> 'rows') r
   where a.fingerprint = 'unrepaired:balance_mismatches'),
  'automatic repair is switched off (settings.auto_recompute_balances)', 'the switched-off repair is named');
select matches(
  (select summary from credit_private.monitor_latest_runs where id = (select id from row1)),
  '^found 1 balance_mismatches, 1 orphaned_recharges; repaired 1 failed_webhooks, 1 orphaned_recharges; left 1 balance_mismatches, 3 failed_webhooks; alerts new unrepaired:',
  'the latest-runs view summarises the run in one line');

-- Run 2: recompute switched on; erin's backoff is over and her retry fails again.
update credit_private.settings set auto_recompute_balances = true;
update credit_private.stripe_webhook_event set updated_at = now() - interval '6 minutes' where event_id = 'evt_t510_erin';
create function pg_temp.boom() returns trigger language plpgsql as $$
begin
  raise exception 'boom from the test' using errcode = 'XX999';
end;
$$;
-- erin's event fails again, with an error worth retrying (not one of retry_skip_error_codes).
do $$
begin
  execute format('create trigger t510_boom_erin before insert on public.credit_transaction for each row when (new.user_id = %L) execute function pg_temp.boom()',
    (select id from ids where name = 'erin'));
end;
$$;
create temp table run2 as select pg_temp.run() as r;
drop trigger t510_boom_erin on public.credit_transaction;
create temp table row2 as select m.* from credit_private.monitor_run m where m.id = (select (r ->> 'run_id')::bigint from run2);
select is((select balance from public.user_credit_balance where user_id = pg_temp.id('bob')), 50::bigint,
  'switched on, the next run recomputes the balance the open alert tracks');
select is(
  (select row(status, attempts)::text from credit_private.stripe_webhook_event where event_id = 'evt_t510_erin'),
  row('failed', 2)::text, 'erin''s event was retried once its backoff was over, and failed again');
select set_eq(
  $$ select x ->> 'category' as c, x ->> 'target' as t, x ->> 'outcome' as o from row2, jsonb_array_elements(repairs) x $$,
  $$ values ('balance_mismatches', (select id from ids where name = 'bob')::text, 'repaired'),
            ('failed_webhooks', 'evt_t510_erin', 'failed_again') $$,
  'run 2 lists the recompute and the retry that failed again');
select set_eq(
  $$ select a ->> 'fingerprint' as f, a ->> 'outcome' as o from row2, jsonb_array_elements(alerts) a $$,
  $$ values ('unrepaired:balance_mismatches', 'resolved'), ('unrepaired:failed_webhooks', 'changed') $$,
  'the balance alert is resolved; the webhook alert changed (a repeated failure joined it)');
select matches(
  (select r ->> 'reason' from credit_private.monitor_alert a, jsonb_array_elements(a.details -> 'rows') r
   where a.fingerprint = 'unrepaired:failed_webhooks' and r ->> 'id' = 'evt_t510_erin'),
  '^failed again \(2 attempts\); next automatic retry after ', 'a repeated failure alerts with its next retry time');
select is(
  (select attempts from credit_private.stripe_webhook_event where event_id = 'evt_t510_erin'), 2::bigint,
  'a run right after does not retry it before its backoff (10 minutes after 2 attempts)');

-- Run 3: a repair that raises is rolled back alone and recorded; the others still happen.
insert into ids values ('r_heidi', pg_temp.orphan(pg_temp.id('heidi'), 'cs_t510_heidi', 11)),
  ('r_ivan', pg_temp.orphan(pg_temp.id('ivan'), 'cs_t510_ivan', 12));
do $$
begin
  execute format('create trigger t510_boom before insert on public.credit_transaction for each row when (new.user_id = %L) execute function pg_temp.boom()',
    (select id from ids where name = 'heidi'));
end;
$$;
create temp table run3 as select pg_temp.run() as r;
create temp table row3 as select m.* from credit_private.monitor_run m where m.id = (select (r ->> 'run_id')::bigint from run3);
select is((select status from row3), 'failed', 'a run with a failing step is recorded as failed');
select is(
  (select jsonb_agg(e - 'context') from row3, jsonb_array_elements(errors) e),
  jsonb_build_array(jsonb_build_object('step', 'repair:orphaned_recharges', 'target', pg_temp.id('r_heidi'),
    'sqlstate', 'XX999', 'message', 'boom from the test')),
  'with the error: step, target, SQLSTATE and message');
select ok(
  exists (select 1 from public.credit_transaction t where t.recharge_id = pg_temp.id('r_ivan'))
  and not exists (select 1 from public.credit_transaction t where t.recharge_id = pg_temp.id('r_heidi')),
  'the other orphan was still back-filled; the failing one changed nothing');
select set_eq(
  $$ select a ->> 'fingerprint' as f, a ->> 'outcome' as o from row3, jsonb_array_elements(alerts) a $$,
  $$ values ('unrepaired:orphaned_recharges', 'new'), ('run_error:repair:orphaned_recharges', 'new'),
            ('unrepaired:failed_webhooks', 'unchanged') $$,
  'the error and the orphan it left are alerted');
select is(
  (select r ->> 'reason' from credit_private.monitor_alert a, jsonb_array_elements(a.details -> 'rows') r
   where a.fingerprint = 'unrepaired:orphaned_recharges'),
  'the repair failed: XX999 boom from the test', 'the unrepaired alert says the repair failed');

-- Run 4: the cause is gone; the orphan the alert tracks is repaired and both alerts resolve.
drop trigger t510_boom on public.credit_transaction;
create temp table run4 as select pg_temp.run() as r;
create temp table row4 as select m.* from credit_private.monitor_run m where m.id = (select (r ->> 'run_id')::bigint from run4);
select ok(exists (select 1 from public.credit_transaction t where t.recharge_id = pg_temp.id('r_heidi')),
  'the next run repairs the orphan the alert tracked');
select set_eq(
  $$ select a ->> 'fingerprint' as f, a ->> 'outcome' as o from row4, jsonb_array_elements(alerts) a $$,
  $$ values ('unrepaired:orphaned_recharges', 'resolved'), ('run_error:repair:orphaned_recharges', 'resolved'),
            ('unrepaired:failed_webhooks', 'unchanged') $$,
  'and resolves both alerts');

-- Paused: the scheduled call records a paused run and changes nothing; a forced run runs.
update credit_private.settings set monitor_enabled = false;
insert into ids values ('r_judy', pg_temp.orphan(pg_temp.id('judy'), 'cs_t510_judy', 13));
create temp table paused as select credit_private.run_monitor() as r;
select is((select r ->> 'status' from paused), 'paused', 'with monitor_enabled off, the scheduled run is paused');
select is(
  (select row(m.status, m.findings, m.repairs)::text from credit_private.monitor_run m
   where m.id = (select (r ->> 'run_id')::bigint from paused)),
  row('paused', '{}'::jsonb, '[]'::jsonb)::text, 'its row says paused and holds nothing');
select ok(not exists (select 1 from public.credit_transaction t where t.recharge_id = pg_temp.id('r_judy')),
  'and nothing was repaired');
update credit_private.check_watermark set checked_through = now() - interval '1 second' where checker = 'monitor';
select isnt((credit_private.run_monitor(p_force => true) ->> 'status'), 'paused', 'a forced run still runs');
select ok(exists (select 1 from public.credit_transaction t where t.recharge_id = pg_temp.id('r_judy')),
  'and repairs');
update credit_private.settings set monitor_enabled = true;

-- A check that raises: no repair is attempted, the run row keeps the error, it is alerted.
create or replace function public.diagnose_credits_incremental(checker text default 'monitor', advance boolean default true,
  max_rows integer default null)
returns jsonb language plpgsql security definer set search_path = '' as $$
begin
  raise exception 'check broken by the test' using errcode = 'XX998';
end;
$$;
create temp table run5 as select pg_temp.run() as r;
create temp table row5 as select m.* from credit_private.monitor_run m where m.id = (select (r ->> 'run_id')::bigint from run5);
select is(
  (select row(status, errors #>> '{0,step}', errors #>> '{0,sqlstate}', errors #>> '{0,message}', repairs)::text from row5),
  row('failed', 'check', 'XX998', 'check broken by the test', '[]'::jsonb)::text,
  'a failing check is recorded in the run row and nothing is repaired');
select ok((select alerts @> '[{"fingerprint": "run_error:check", "outcome": "new"}]' from row5), 'and alerted');
select ok(
  (select title = 'Monitor step check failed: check broken by the test (SQLSTATE XX998)' and body ->> 'severity' = 'critical'
   from credit_private.monitor_outbox where fingerprint = 'run_error:check'),
  'as a critical message in the outbox');

-- Without its settings row the run still leaves a row with the error.
delete from credit_private.settings;
create temp table run6 as select pg_temp.run() as r;
create temp table row6 as select m.* from credit_private.monitor_run m where m.id = (select (r ->> 'run_id')::bigint from run6);
select is(
  (select row(status, errors #>> '{0,step}', errors #>> '{0,sqlstate}')::text from row6),
  row('failed', 'settings', 'P0002')::text, 'a missing settings row is recorded as the run''s error');

select * from finish();
rollback;
