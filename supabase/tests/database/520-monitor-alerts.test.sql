-- Test: monitor alerts are deduplicated by fingerprint: the same problem alerts once, a changed one again, a reminder only after the interval (and not while the last message waits), thresholds alert even when repaired, and resolved alerts say so.
begin;
select plan(30);

create function pg_temp.orphan(p_user_id uuid, p_session text, p_credits bigint)
returns uuid
language sql
as $$
  insert into public.credit_recharge (user_id, credits, amount_cents, currency, status, completed_at, stripe_checkout_session_id)
  values (p_user_id, p_credits, p_credits * 10, 'eur', 'completed', now(), p_session)
  returning id
$$;

-- now() stands still in a test: each run looks again at everything since the test began.
create function pg_temp.run() returns jsonb language sql as $$
  update credit_private.check_watermark set checked_through = now() - interval '1 second' where checker = 'monitor';
  select credit_private.run_monitor(true);
$$;

create function pg_temp.outcome(p_run jsonb, p_fingerprint text) returns text language sql as $$
  select a ->> 'outcome' from jsonb_array_elements(p_run -> 'alerts') a where a ->> 'fingerprint' = p_fingerprint
$$;

update credit_private.settings set monitor_enabled = true, auto_fix_orphaned_recharges = false,
  auto_recompute_balances = true, auto_retry_failed_webhooks = true, auto_restore_installation = false,
  monitor_repair_batch = 500, incremental_overlap = '0', alert_reminder_interval = '6 hours',
  alert_threshold_orphaned_recharges = 2, alert_threshold_balance_mismatches = 3, alert_threshold_failed_webhooks = 5,
  alert_threshold_dangling_recharge_entries = 1, alert_threshold_stuck_recharges = 10,
  alert_threshold_negative_balances = 10, alert_threshold_installation = 1;
delete from credit_private.monitor_outbox;
delete from credit_private.monitor_alert;
delete from credit_private.stripe_webhook_event where status in ('received', 'failed', 'deferred');
insert into credit_private.check_watermark (checker, checked_through, last_run_at)
values ('monitor', now() - interval '1 second', now())
on conflict (checker) do update set checked_through = excluded.checked_through;

create temp table ids (name text primary key, id uuid);
insert into ids values ('olga', tests.create_user()), ('pete', tests.create_user()), ('quinn', tests.create_user());
create function pg_temp.id(p_name text) returns uuid language sql as $$ select id from ids where name = p_name $$;

-- A: a new problem alerts once.
insert into ids values ('o1', pg_temp.orphan(pg_temp.id('olga'), 'cs_t520_o1', 40));
create temp table a as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from a), 'unrepaired:orphaned_recharges'), 'new', 'a new problem opens an alert');
select is((select count(*) from credit_private.monitor_outbox), 1::bigint, 'and queues exactly one message');
select is(
  (select row(kind, title, fingerprint)::text from credit_private.monitor_outbox),
  row('alert', 'Orphaned recharges: 1 could not be repaired', 'unrepaired:orphaned_recharges')::text,
  'titled with what and how many');
select is(
  (select body - 'first_seen_at' - 'rows' - 'suggested_action' - 'run' from credit_private.monitor_outbox),
  '{"type": "alert", "fingerprint": "unrepaired:orphaned_recharges", "alert_kind": "unrepaired",
    "category": "orphaned_recharges", "severity": "critical", "summary": "Orphaned recharges: 1 could not be repaired",
    "count": 1, "more_rows": 0, "occurrences": 1}'::jsonb,
  'its body carries kind, category, severity, summary and count');
select is(
  (select body #> '{rows,0}' from credit_private.monitor_outbox),
  jsonb_build_object('id', pg_temp.id('o1'),
    'line', format('recharge %s: 40 credits (EUR 4.00) of user %s, credited %s, no ledger entry', pg_temp.id('o1'),
      pg_temp.id('olga'), to_jsonb(now()) #>> '{}'),
    'reason', 'automatic repair is switched off (settings.auto_fix_orphaned_recharges)'),
  'the worst rows, each naming the recharge, amounts, user and why it is left');
select is(
  (select (body -> 'run') - 'id' from credit_private.monitor_outbox),
  jsonb_build_object(
    'found', '{"installation": 0, "failed_webhooks": 0, "stuck_recharges": 0, "negative_balances": 0, "balance_mismatches": 0, "orphaned_recharges": 1, "dangling_recharge_entries": 0}'::jsonb,
    'repaired', '{"installation": 0, "failed_webhooks": 0, "stuck_recharges": 0, "negative_balances": 0, "balance_mismatches": 0, "orphaned_recharges": 0, "dangling_recharge_entries": 0}'::jsonb,
    'remaining', '{"installation": 0, "failed_webhooks": 0, "stuck_recharges": 0, "negative_balances": 0, "balance_mismatches": 0, "orphaned_recharges": 1, "dangling_recharge_entries": 0}'::jsonb),
  'and the run''s counts: found, repaired, remaining');
select matches((select body ->> 'suggested_action' from credit_private.monitor_outbox),
  '^Back-fill its recharge entry', 'and what to do');

-- B: the same problem again: no new message.
create temp table b as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from b), 'unrepaired:orphaned_recharges'), 'unchanged', 'the same problem again is unchanged');
select is((select count(*) from credit_private.monitor_outbox), 1::bigint, 'and queues nothing');
select is((select occurrences from credit_private.monitor_alert where fingerprint = 'unrepaired:orphaned_recharges'), 2::bigint,
  'the alert counts the runs that saw it');

-- C: it changes (a second orphan), and the run crosses the threshold (2 found).
insert into ids values ('o2', pg_temp.orphan(pg_temp.id('pete'), 'cs_t520_o2', 70));
create temp table c as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from c), 'unrepaired:orphaned_recharges'), 'changed', 'a changed problem alerts again');
select is(pg_temp.outcome((select r from c), 'threshold:orphaned_recharges'), 'new', 'and crossing the threshold alerts');
select is(
  array(select title from credit_private.monitor_outbox order by id),
  array['Orphaned recharges: 1 could not be repaired', 'Changed: Orphaned recharges: 2 could not be repaired',
        'Orphaned recharges: 2 found in one run (threshold 2), 0 repaired'],
  'one message for the change and one for the threshold');
select is(
  (select array(select r ->> 'id' from jsonb_array_elements(body -> 'rows') r) from credit_private.monitor_outbox where kind = 'changed'),
  array[pg_temp.id('o2')::text, pg_temp.id('o1')::text], 'the worst row (most credits) first');

-- D: unchanged, but the reminder interval has passed since the last message (sent by now).
update credit_private.monitor_outbox set status = 'sent', sent_at = now();
update credit_private.monitor_alert set last_notified_at = now() - interval '6 hours 1 minute'
where fingerprint = 'unrepaired:orphaned_recharges';
create temp table d as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from d), 'unrepaired:orphaned_recharges'), 'reminder', 'after the interval, a reminder');
select is(pg_temp.outcome((select r from d), 'threshold:orphaned_recharges'), 'unchanged', 'the other alert stays quiet');
select is(
  (select row(kind, title)::text from credit_private.monitor_outbox where status = 'pending'),
  row('reminder', 'Still open: Orphaned recharges: 2 could not be repaired')::text, 'one reminder message');
select is((select last_notified_at from credit_private.monitor_alert where fingerprint = 'unrepaired:orphaned_recharges'),
  now(), 'the reminder restarts the interval');

-- E: interval passed again, but the reminder still waits in the outbox: no second one.
update credit_private.monitor_alert set last_notified_at = now() - interval '7 hours'
where fingerprint = 'unrepaired:orphaned_recharges';
create temp table e as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from e), 'unrepaired:orphaned_recharges'), 'unchanged',
  'no reminder while the last message is still undelivered');
select is((select count(*) from credit_private.monitor_outbox where status = 'pending'), 1::bigint, 'still one pending');
update credit_private.monitor_alert set last_notified_at = now() - interval '5 hours 59 minutes'
where fingerprint = 'unrepaired:orphaned_recharges';
update credit_private.monitor_outbox set status = 'sent', sent_at = now();
create temp table e2 as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from e2), 'unrepaired:orphaned_recharges'), 'unchanged', 'nor before the interval');

-- F: repaired: the unrepaired alert resolves, saying so; the threshold holds while found.
update credit_private.settings set auto_fix_orphaned_recharges = true;
create temp table f as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from f), 'unrepaired:orphaned_recharges'), 'resolved', 'once repaired, the alert resolves');
select is(
  (select row(status, resolved_at is not null)::text from credit_private.monitor_alert where fingerprint = 'unrepaired:orphaned_recharges'),
  row('resolved', true)::text, 'and is marked resolved');
select is(
  (select row(kind, title, body ->> 'type', body ->> 'first_seen_at' is not null, body ->> 'resolved_at' is not null)::text
   from credit_private.monitor_outbox where status = 'pending'),
  row('resolved', 'Resolved: Orphaned recharges: 2 could not be repaired', 'resolved', true, true)::text,
  'a resolved message says so, with since when it was open');
select is(pg_temp.outcome((select r from f), 'threshold:orphaned_recharges'), 'unchanged',
  'the threshold alert stays while a run finds that many (repaired or not)');

-- G: a run that finds fewer resolves the threshold alert.
update credit_private.monitor_outbox set status = 'sent', sent_at = now();
create temp table g as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from g), 'threshold:orphaned_recharges'), 'resolved', 'below the threshold it resolves');
select is((select count(*) from credit_private.monitor_outbox where status = 'pending'), 1::bigint, 'with one message');
select is(pg_temp.outcome((select r from g), 'unrepaired:orphaned_recharges'), null, 'a resolved alert is not resolved twice');

-- H: the same problem coming back opens the alert anew.
update credit_private.settings set auto_fix_orphaned_recharges = false;
update credit_private.monitor_outbox set status = 'sent', sent_at = now();
insert into ids values ('o3', pg_temp.orphan(pg_temp.id('quinn'), 'cs_t520_o3', 5));
create temp table h as select pg_temp.run() as r;
select is(pg_temp.outcome((select r from h), 'unrepaired:orphaned_recharges'), 'new', 'a problem back after resolution is new');
select is(
  (select row(status, occurrences, first_seen_at = now(), resolved_at)::text
   from credit_private.monitor_alert where fingerprint = 'unrepaired:orphaned_recharges'),
  row('open', 1, true, null)::text, 'open again, counted from one');

select * from finish();
rollback;
