-- Test: the weekly report's figures on a prepared week are exactly right (recharges by currency, spent, refunds, disputes, payment-to-credit percentiles, webhook failures and retries, monitor findings and repairs, open problems, verdict), in the configured time zone, produced once and sent once, when due.
begin;
select plan(28);

-- A paid Checkout Session whose event Stripe created at p_paid_at and the database credited
-- at p_credited_at (the event received just before).
create function pg_temp.paid(p_user_id uuid, p_session text, p_credits bigint, p_cents bigint, p_currency text,
  p_paid_at timestamptz, p_credited_at timestamptz)
returns uuid
language plpgsql
as $$
declare
  v_id uuid;
begin
  perform public.handle_stripe_event(jsonb_build_object(
    'id', 'evt_' || p_session, 'object', 'event', 'type', 'checkout.session.completed',
    'created', extract(epoch from p_paid_at)::bigint, 'livemode', false,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', p_session, 'object', 'checkout.session', 'client_reference_id', p_user_id,
      'payment_status', 'paid', 'payment_intent', 'pi_' || p_session, 'amount_total', p_cents,
      'currency', p_currency, 'metadata', jsonb_build_object('credits', p_credits::text)))));
  update public.credit_recharge set created_at = p_paid_at - interval '1 minute', completed_at = p_credited_at,
    updated_at = p_credited_at
  where stripe_checkout_session_id = p_session
  returning id into v_id;
  update public.credit_transaction set created_at = p_credited_at where recharge_id = v_id;
  update credit_private.stripe_webhook_event set received_at = p_credited_at - interval '100 milliseconds',
    processed_at = p_credited_at, updated_at = p_credited_at
  where event_id = 'evt_' || p_session;
  return v_id;
end;
$$;

create function pg_temp.entry(p_user_id uuid, p_type text, p_amount bigint, p_key text, p_at timestamptz)
returns void
language sql
as $$
  select credit_private.post_ledger_entry(p_user_id, p_type, p_amount, p_key);
  update public.credit_transaction set created_at = p_at where idempotency_key = p_key;
$$;

create function pg_temp.event(p_event_id text, p_status text, p_received_at timestamptz)
returns void
language sql
as $$
  insert into credit_private.stripe_webhook_event (event_id, type, payload, status, attempts, received_at, updated_at)
  values (p_event_id, 'charge.refunded', jsonb_build_object('id', p_event_id), p_status, 1, p_received_at, p_received_at)
$$;

create function pg_temp.repair(p_action text, p_target text, p_actor text, p_dry_run boolean, p_after jsonb, p_at timestamptz)
returns void
language sql
as $$
  insert into credit_private.repair_log (run_id, requested_action, action, target_type, target_id, dry_run, actor,
    reason, db_role, after, detail, created_at)
  values (gen_random_uuid(), p_action, p_action, 'test', p_target, p_dry_run, p_actor, 'test-530', 'postgres', p_after,
    'detail ' || p_target, p_at)
$$;

-- A clean slate for what the report reads outside the week's rows.
update credit_private.settings set report_time_zone = 'UTC', report_weekday = 1, report_hour = 9, max_report_rows = 100;
delete from credit_private.monitor_alert;
delete from credit_private.monitor_outbox;
delete from credit_private.monitor_weekly_report;
delete from credit_private.stripe_webhook_event where status in ('received', 'failed', 'deferred');

create temp table ids (name text primary key, id uuid);
insert into ids values ('u1', tests.create_user()), ('u2', tests.create_user()), ('u3', tests.create_user());
create function pg_temp.id(p_name text) returns uuid language sql as $$ select id from ids where name = p_name $$;

-- The week of Monday 2025-03-03 (UTC). Paid -> credited: 2 s, 10 s, 100 s; r4 has no event.
select pg_temp.paid(pg_temp.id('u1'), 'cs_t530_r1', 100, 1000, 'usd', '2025-03-03 10:00:00+00', '2025-03-03 10:00:02+00');
select pg_temp.paid(pg_temp.id('u2'), 'cs_t530_r2', 200, 2000, 'usd', '2025-03-04 12:00:00+00', '2025-03-04 12:00:10+00');
select pg_temp.paid(pg_temp.id('u3'), 'cs_t530_r3', 50, 500, 'eur', '2025-03-05 08:00:00+00', '2025-03-05 08:01:40+00');
select pg_temp.paid(pg_temp.id('u1'), 'cs_t530_r4', 30, 300, 'eur', '2025-03-06 09:00:00+00', '2025-03-06 09:00:05+00');
delete from credit_private.stripe_webhook_event where event_id = 'evt_cs_t530_r4';
-- Just outside: credited at the week's end (its event received inside), and the evening before.
select pg_temp.paid(pg_temp.id('u2'), 'cs_t530_r5', 999, 9990, 'usd', '2025-03-09 23:59:58+00', '2025-03-10 00:00:00+00');
select pg_temp.paid(pg_temp.id('u3'), 'cs_t530_r6', 7, 70, 'gbp', '2025-03-02 23:29:50+00', '2025-03-02 23:30:00+00');

-- Spent 25 in two spends; one refund of 40; a dispute hold of 10 and its release.
select pg_temp.entry(pg_temp.id('u1'), 'spend', -20, 't530-spend-1', '2025-03-07 10:00:00+00');
select pg_temp.entry(pg_temp.id('u2'), 'spend', -5, 't530-spend-2', '2025-03-07 11:00:00+00');
select pg_temp.entry(pg_temp.id('u2'), 'spend', -1, 't530-spend-late', '2025-03-10 00:00:00+00');
select pg_temp.entry(pg_temp.id('u2'), 'refund', -40, 't530-refund-1', '2025-03-08 10:00:00+00');
select pg_temp.entry(pg_temp.id('u3'), 'dispute', -10, 't530-dispute-hold', '2025-03-08 11:00:00+00');
select pg_temp.entry(pg_temp.id('u3'), 'dispute', 10, 't530-dispute-release', '2025-03-09 11:00:00+00');

-- Webhooks: one still failing, one that failed once then was retried and processed, and a
-- failure during the week of an event received before it.
select pg_temp.event('evt_t530_fail', 'failed', '2025-03-05 10:00:00+00');
select pg_temp.event('evt_t530_recovered', 'processed', '2025-03-05 11:00:00+00');
select pg_temp.event('evt_t530_old', 'processed', '2025-02-20 11:00:00+00');
insert into credit_private.stripe_webhook_failure (event_id, event_type, attempt, error_code, error, failed_at) values
  ('evt_t530_fail', 'charge.refunded', 1, 'XX000', 'boom', '2025-03-05 10:00:00+00'),
  ('evt_t530_recovered', 'charge.refunded', 1, 'XX000', 'boom', '2025-03-05 11:00:00+00'),
  ('evt_t530_old', 'charge.refunded', 3, 'XX000', 'boom', '2025-03-04 11:00:00+00');

-- What the monitor and people did during the week (and a dry run, and a repair after it).
-- The same orphan seen by two runs counts once.
insert into credit_private.monitor_run (started_at, finished_at, status, findings, finding_ids) values
  ('2025-03-04 00:00:00+00', '2025-03-04 00:00:01+00', 'repaired', '{"orphaned_recharges": 1, "failed_webhooks": 1}',
   '{"orphaned_recharges": ["r-orphan"], "failed_webhooks": ["evt_t530_recovered"]}'),
  ('2025-03-04 00:15:00+00', '2025-03-04 00:15:01+00', 'problems', '{"orphaned_recharges": 1}',
   '{"orphaned_recharges": ["r-orphan"]}'),
  ('2025-03-05 00:00:00+00', '2025-03-05 00:00:01+00', 'failed', '{"balance_mismatches": 2}',
   '{"balance_mismatches": ["u-mismatch", "u-other"]}'),
  ('2025-03-06 00:00:00+00', '2025-03-06 00:00:00+00', 'paused', '{}', '{}'),
  ('2025-03-10 00:00:00+00', '2025-03-10 00:00:01+00', 'repaired', '{"orphaned_recharges": 9}',
   '{"orphaned_recharges": ["r-late"]}');
select pg_temp.repair('retry_failed_webhooks', 'evt_t530_recovered', 'payment-monitor', false, '{"status": "processed"}',
  '2025-03-05 11:15:00+00');
select pg_temp.repair('fix_orphaned_recharges', 'r-orphan', 'payment-monitor', false, null, '2025-03-04 00:00:01+00');
select pg_temp.repair('recompute_balances', 'u-mismatch', 'ops@example.com', false, null, '2025-03-06 12:00:00+00');
select pg_temp.repair('recompute_balances', 'u-dry', 'ops@example.com', true, null, '2025-03-06 12:00:00+00');
select pg_temp.repair('recompute_balances', 'u-late', 'ops@example.com', false, null, '2025-03-10 12:00:00+00');

insert into credit_private.monitor_alert (fingerprint, kind, category, severity, signature, summary, details, first_seen_at)
values ('unrepaired:failed_webhooks', 'unrepaired', 'failed_webhooks', 'critical', 's',
  'Failed webhooks: 1 keep failing or need a human', '{"count": 1}', '2025-03-05 10:15:00+00');

create temp table rep as select credit_private.build_weekly_report('2025-03-03') as r;

select is((select r -> 'week' from rep),
  '{"start": "2025-03-03", "end": "2025-03-09", "time_zone": "UTC", "from": "2025-03-03T00:00:00+00:00", "to": "2025-03-10T00:00:00+00:00"}'::jsonb,
  'the week: Monday to Sunday, midnight to midnight in the configured zone');
select is((select r -> 'recharges' from rep),
  '{"count": 4, "credits": 380, "by_currency": [{"currency": "eur", "count": 2, "amount_cents": 800}, {"currency": "usd", "count": 2, "amount_cents": 3000}]}'::jsonb,
  'recharges credited that week: count, credits and money by currency');
select is((select row(r -> 'credits_spent', r -> 'spends')::text from rep), row('25'::jsonb, '2'::jsonb)::text,
  'credits spent and spends');
select is((select r -> 'refunds' from rep), '{"count": 1, "credits": 40}'::jsonb, 'refunds');
select is((select r -> 'disputes' from rep),
  '{"holds": 1, "credits_held": 10, "releases": 1, "credits_restored": 10}'::jsonb, 'disputes held and released');
select is((select r -> 'adjustments' from rep), '{"count": 0, "credits": 0}'::jsonb, 'no adjustments');
select is((select r -> 'payment_to_credit' from rep),
  '{"measured": 3, "not_measured": 1, "median_seconds": 10.000, "p95_seconds": 91.000, "max_seconds": 100.000}'::jsonb,
  'payment to credit: median, p95 (interpolated) and max over the recharges with a paying event');
select is((select r -> 'webhooks' from rep),
  '{"events": 6, "failed_events": 2, "failure_rate": 0.3333, "failed_attempts": 3, "retries": 1, "retries_succeeded": 1, "still_failing": 1}'::jsonb,
  'webhooks: events received, how many failed, failed attempts, retries and what still fails');
select is((select r #> '{inconsistencies,monitor}' from rep),
  '{"runs": 4, "failed_runs": 1, "paused_runs": 1, "found": {"installation": 0, "failed_webhooks": 1, "stuck_recharges": 0, "negative_balances": 0, "balance_mismatches": 2, "orphaned_recharges": 1, "dangling_recharge_entries": 0}}'::jsonb,
  'the monitor''s runs of the week and the distinct inconsistencies they found');
select is((select (r #> '{inconsistencies,repairs}') - 'items' from rep),
  '{"count": 3, "by_monitor": 2, "by_people": 1, "by_category": {"orphaned_recharges": 1, "balance_mismatches": 1, "failed_webhooks": 1, "installation": 0}}'::jsonb,
  'every repair made that week, by the monitor or people (dry runs excluded)');
select is(
  (select array(select i ->> 'target_id' from jsonb_array_elements(r #> '{inconsistencies,repairs,items}') i) from rep),
  array['r-orphan', 'evt_t530_recovered', 'u-mismatch'], 'listed in order');
select is((select r #> '{open_problems,diagnosis}' from rep), public.diagnose_credits(0) -> 'counts',
  'open problems: the full diagnosis counts');
select is((select r #> '{open_problems,count}' from rep), '1'::jsonb, 'one open problem: the failing webhook');
select is((select r #> '{open_problems,alerts}' from rep),
  '[{"fingerprint": "unrepaired:failed_webhooks", "severity": "critical", "summary": "Failed webhooks: 1 keep failing or need a human", "count": 1, "since": "2025-03-05T10:15:00+00:00"}]'::jsonb,
  'and the open alerts');
select is((select r ->> 'verdict' from rep), 'Action needed: 1 open problem(s) (1 failed_webhooks); see open_problems.',
  'the verdict names what needs action');

-- Nothing open: the verdict says healthy and how much was repaired.
delete from credit_private.stripe_webhook_event where event_id = 'evt_t530_fail';
delete from credit_private.monitor_alert;
select is((credit_private.build_weekly_report('2025-03-03') ->> 'verdict'),
  'Healthy: 4 recharge(s) credited; 3 repair(s) made during the week, nothing left open.', 'a healthy week says so');

-- The same week read in Berlin starts an hour earlier, and takes in r6.
update credit_private.settings set report_time_zone = 'Europe/Berlin';
select is(
  (select row(r #>> '{week,from}', r #>> '{recharges,count}', r #>> '{recharges,credits}')::text
   from (select credit_private.build_weekly_report('2025-03-03') as r) x),
  row('2025-03-02T23:00:00+00:00', '5', '387')::text, 'the week follows the report time zone');

-- When the report is due: the last report_weekday report_hour:00 in the zone.
select is(credit_private.weekly_report_due('2025-03-10 08:00:00+00', (select s from credit_private.settings s)),
  row('2025-03-10 08:00:00+00'::timestamptz, '2025-03-03'::date),
  'Monday 09:00 in Berlin is 08:00 UTC; it covers the week before');
select is((credit_private.weekly_report_due('2025-03-10 07:59:59+00', (select s from credit_private.settings s))).week_start,
  '2025-02-24'::date, 'a second earlier the last one due was the week before');
update credit_private.settings set report_time_zone = 'America/New_York';
select is((credit_private.weekly_report_due('2025-03-10 13:30:00+00', (select s from credit_private.settings s))).due_at,
  '2025-03-10 13:00:00+00'::timestamptz, 'after the switch to daylight saving time, 09:00 in New York is 13:00 UTC');
update credit_private.settings set report_time_zone = 'Asia/Tokyo', report_weekday = 3, report_hour = 0;
select is(credit_private.weekly_report_due('2025-03-04 15:00:00+00', (select s from credit_private.settings s)),
  row('2025-03-04 15:00:00+00'::timestamptz, '2025-02-26'::date),
  'Wednesday 00:00 in Tokyo is Tuesday 15:00 UTC; that week began on a Wednesday');
select throws_ok($$ update credit_private.settings set report_time_zone = 'Mars/Olympus' $$, '22023', null,
  'an unknown time zone is refused');

-- Produced once, queued once.
update credit_private.settings set report_time_zone = 'UTC', report_weekday = 1, report_hour = 9;
create temp table produced as select credit_private.produce_weekly_report('2025-03-03') as id;
select is((select credit_private.produce_weekly_report('2025-03-03')), (select id from produced),
  'producing a week again returns the same report');
select is(
  (select array_agg(row(o.kind, o.report_id, o.title)::text) from credit_private.monitor_outbox o),
  array[row('weekly_report', (select id from produced),
    'Weekly credits report 2025-03-03 to 2025-03-09 (UTC): Healthy: 4 recharge(s) credited; 3 repair(s) made during the week, nothing left open.')::text],
  'and it was queued for Slack once');
select is(
  (select row(r.week_start, r.time_zone, r.period_start, r.period_end, r.report ->> 'verdict')::text
   from credit_private.monitor_weekly_report r where r.id = (select id from produced)),
  row('2025-03-03'::date, 'UTC', '2025-03-03 00:00:00+00'::timestamptz, '2025-03-10 00:00:00+00'::timestamptz,
    'Healthy: 4 recharge(s) credited; 3 repair(s) made during the week, nothing left open.')::text,
  'stored as one JSON row for its week');

-- The hourly job: produces when due (within a day), once.
update credit_private.settings set report_weekday = extract(isodow from now() at time zone 'UTC'),
  report_hour = extract(hour from now() at time zone 'UTC');
create temp table due as select credit_private.produce_weekly_report_if_due() as id;
select is(
  (select week_start from credit_private.monitor_weekly_report where id = (select id from due)),
  (now() at time zone 'UTC')::date - 7, 'the hourly job produces the week that just ended when it is due');
select is(credit_private.produce_weekly_report_if_due(), null, 'and not twice');
delete from credit_private.monitor_weekly_report;
update credit_private.settings set report_weekday = extract(isodow from now() at time zone 'UTC' - interval '2 days');
select is(credit_private.produce_weekly_report_if_due(), null, 'nor a report that was due more than a day ago');

select * from finish();
rollback;
