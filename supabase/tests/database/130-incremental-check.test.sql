-- Test: diagnose_credits_incremental: the monitor's check names only what changed since its watermark (minus the overlap), by index, and moves the watermark.
begin;
select plan(24);

create temp table ids (name text primary key, id uuid);
insert into ids values ('old_user', tests.create_user()), ('old_negative', tests.create_user()),
  ('new_user', tests.create_user()), ('new_negative', tests.create_user()), ('legacy', tests.create_user());

-- Old problems: changed two days ago, before the watermark.
insert into public.credit_recharge (user_id, credits, status, completed_at, stripe_checkout_session_id, created_at, updated_at)
values ((select id from ids where name = 'legacy'), 40, 'completed', now() - interval '2 days', 'cs_t130_old_orphan',
  now() - interval '2 days', now() - interval '2 days');
insert into ids select 'r_old_orphan', id from public.credit_recharge where stripe_checkout_session_id = 'cs_t130_old_orphan';
insert into ids select 'r_old_dangling', tests.pay((select id from ids where name = 'old_user'), 'cs_t130_old_1', 100);
select tests.pay((select id from ids where name = 'old_negative'), 'cs_t130_old_2', 10);
update public.credit_recharge set status = 'pending', completed_at = null
where id = (select id from ids where name = 'r_old_dangling');
update public.credit_transaction set created_at = now() - interval '2 days'
where user_id in (select id from ids where name in ('old_user', 'old_negative'));
update public.credit_recharge set created_at = now() - interval '2 days', updated_at = now() - interval '2 days'
where user_id in (select id from ids where name in ('old_user', 'old_negative'));
update public.user_credit_balance set balance = balance + 5 where user_id = (select id from ids where name = 'old_user');
update public.user_credit_balance set balance = -3 where user_id = (select id from ids where name = 'old_negative');
insert into public.credit_recharge (user_id, credits, stripe_checkout_session_id, created_at, updated_at)
values ((select id from ids where name = 'legacy'), 5, 'cs_t130_old_stuck', now() - interval '5 hours', now() - interval '5 hours');
insert into ids select 'r_old_stuck', id from public.credit_recharge where stripe_checkout_session_id = 'cs_t130_old_stuck';
insert into credit_private.stripe_webhook_event (event_id, type, payload, status, attempts, last_error, last_error_code, received_at, updated_at)
values ('evt_t130_old', 'checkout.session.completed', '{"id": "evt_t130_old"}', 'failed', 1, 'boom', 'XX000',
  now() - interval '1 day', now() - interval '1 day');

-- New problems: changed now, after the watermark.
insert into public.credit_recharge (user_id, credits, status, completed_at, stripe_checkout_session_id)
values ((select id from ids where name = 'legacy'), 60, 'completed', now(), 'cs_t130_new_orphan');
insert into ids select 'r_new_orphan', id from public.credit_recharge where stripe_checkout_session_id = 'cs_t130_new_orphan';
insert into ids select 'r_new_dangling', tests.pay((select id from ids where name = 'new_user'), 'cs_t130_new_1', 100);
update public.credit_recharge set status = 'pending', completed_at = null
where id = (select id from ids where name = 'r_new_dangling');
insert into ids select 'e_new_dangling', t.id from public.credit_transaction t
where t.recharge_id = (select id from ids where name = 'r_new_dangling');
update public.user_credit_balance set balance = balance + 9 where user_id = (select id from ids where name = 'new_user');
select tests.pay((select id from ids where name = 'new_negative'), 'cs_t130_new_2', 10);
update public.user_credit_balance set balance = -1 where user_id = (select id from ids where name = 'new_negative');
insert into public.credit_recharge (user_id, credits, stripe_checkout_session_id, created_at)
values ((select id from ids where name = 'legacy'), 5, 'cs_t130_new_stuck', now() - interval '70 minutes');
insert into ids select 'r_new_stuck', id from public.credit_recharge where stripe_checkout_session_id = 'cs_t130_new_stuck';
insert into credit_private.stripe_webhook_event (event_id, type, payload, status, attempts, last_error, last_error_code)
values ('evt_t130_new', 'checkout.session.completed', '{"id": "evt_t130_new"}', 'failed', 1, 'boom', 'XX000');
revoke select on public.user_credit_balance from authenticated;

-- The monitor last looked ten minutes ago.
insert into credit_private.check_watermark (checker, checked_through, last_run_at)
values ('t130', now() - interval '10 minutes', now() - interval '10 minutes');

create temp table inc as select public.diagnose_credits_incremental('t130') as r;

select is(
  (select r -> 'window' from inc),
  jsonb_build_object('from', now() - interval '15 minutes', 'to', now()),
  'the window starts at the watermark minus the five-minute overlap'
);
select set_eq(
  $$ select id from tests.named((select r from inc), 'orphaned_recharges', 'recharge_id') $$,
  $$ select id::text from ids where name = 'r_new_orphan' $$,
  'orphaned_recharges: only the recharge changed since the watermark');
select set_eq(
  $$ select id from tests.named((select r from inc), 'dangling_recharge_entries', 'transaction_id') $$,
  $$ select id::text from ids where name = 'e_new_dangling' $$,
  'dangling_recharge_entries: only the new entry');
select set_eq(
  $$ select id from tests.named((select r from inc), 'balance_mismatches', 'user_id') $$,
  $$ select id::text from ids where name in ('new_user', 'new_negative') $$,
  'balance_mismatches: only users with new entries');
select set_eq(
  $$ select id from tests.named((select r from inc), 'negative_balances', 'user_id') $$,
  $$ select id::text from ids where name = 'new_negative' $$,
  'negative_balances: only users with new entries');
select set_eq(
  $$ select id from tests.named((select r from inc), 'stuck_recharges', 'recharge_id') $$,
  $$ select id::text from ids where name = 'r_new_stuck' $$,
  'stuck_recharges: only the recharge that crossed the threshold in the window');
select set_eq(
  $$ select id from tests.named((select r from inc), 'failed_webhooks', 'event_id') $$,
  $$ values ('evt_t130_new') $$,
  'failed_webhooks: only the event that failed in the window');
select set_eq(
  $$ select id from tests.named((select r from inc), 'installation', 'name') $$,
  $$ values ('public.user_credit_balance') $$,
  'installation: checked in full every time (catalog only)');
select is((select r ->> 'scope' from inc), 'incremental', 'the report says it is incremental');
select is(
  (select r -> 'changed' from inc),
  jsonb_build_object(
    'users', (select count(distinct t.user_id) from public.credit_transaction t where t.created_at > now() - interval '15 minutes'),
    'recharges', (select count(*) from public.credit_recharge r where r.updated_at > now() - interval '15 minutes'),
    'recharge_entries', (select count(*) from public.credit_transaction t
                         where t.created_at > now() - interval '15 minutes' and t.type = 'recharge')),
  'and how many changed rows it looked at: those in the window, no more');

-- The full diagnosis sees the old problems too.
create temp table full_report as select public.diagnose_credits(100000) as r;
select ok(
  (select (select id::text from ids where name = 'r_old_orphan') in (select id from tests.named(r, 'orphaned_recharges', 'recharge_id'))
     and (select id::text from ids where name = 'old_user') in (select id from tests.named(r, 'balance_mismatches', 'user_id'))
     and (select id::text from ids where name = 'old_negative') in (select id from tests.named(r, 'negative_balances', 'user_id'))
     and (select id::text from ids where name = 'r_old_stuck') in (select id from tests.named(r, 'stuck_recharges', 'recharge_id'))
     and 'evt_t130_old' in (select id from tests.named(r, 'failed_webhooks', 'event_id'))
   from full_report),
  'the full diagnosis names the old problems the incremental check skipped'
);

-- The watermark.
select is(
  (select row(w.checked_through, w.last_run_at)::text from credit_private.check_watermark w where w.checker = 't130'),
  row(now(), now())::text, 'the run moved the watermark to its start');
select is(
  (select w.last_counts from credit_private.check_watermark w where w.checker = 't130'),
  (select r -> 'counts' from inc), 'and kept its counts');
select is(
  (select public.diagnose_credits_incremental('t130', advance => false) -> 'window' ->> 'from'),
  to_jsonb(now() - interval '5 minutes') #>> '{}', 'the next run looks back only the overlap');
update credit_private.check_watermark set checked_through = now() - interval '1 hour' where checker = 't130';
select is(
  (select public.diagnose_credits_incremental('t130', advance => false) #>> '{advanced}'),
  'false', 'advance => false only looks');
select is(
  (select w.checked_through from credit_private.check_watermark w where w.checker = 't130'),
  now() - interval '1 hour', 'and leaves the watermark where it was');
select is(
  (select public.diagnose_credits_incremental('t130_first', advance => false) -> 'window' ->> 'from'),
  to_jsonb(now() - interval '1 day' - interval '5 minutes') #>> '{}',
  'a checker''s first run looks back settings.incremental_first_lookback');
select is(
  (select count(*) from credit_private.check_watermark w where w.checker = 't130_first'),
  0::bigint, 'without creating a watermark when it only looks');
update credit_private.settings set incremental_overlap = interval '0';
select is(
  (select public.diagnose_credits_incremental('t130', advance => false) -> 'window' ->> 'from'),
  to_jsonb(now() - interval '1 hour') #>> '{}', 'the overlap is a setting');
select throws_ok($$ select public.diagnose_credits_incremental('') $$, '22023', null, 'a checker name is required');

-- What the check relies on to stay cheap: a range or point index for each lookup.
select has_index('public', 'credit_transaction', 'credit_transaction_created_at_idx', array['created_at'],
  'ledger entries since the watermark: by created_at');
select has_index('public', 'credit_recharge', 'credit_recharge_updated_at_idx', array['updated_at'],
  'recharges changed since the watermark: by updated_at');
select has_index('public', 'credit_transaction', 'credit_transaction_user_id_created_at_idx', array['user_id', 'created_at'],
  'a touched user''s ledger sums: by user_id');
select ok(
  (select pg_get_indexdef(i.indexrelid) like '%(status, received_at)%WHERE (status = ANY%'
   from pg_index i where i.indexrelid = 'credit_private.stripe_webhook_event_unfinished_idx'::regclass),
  'unfinished inbox events: a partial index that stays small');

select * from finish();
rollback;
