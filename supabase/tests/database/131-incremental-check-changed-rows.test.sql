-- Test: diagnose_credits_incremental settles most changed recharges and recharge entries from the changed rows themselves (migration 20261126007500) and still reports exactly what the views say of every row it examines.
begin;
select plan(9);

create temp table ids (name text primary key, id uuid);
insert into ids values ('ann', tests.create_user()), ('ben', tests.create_user());

-- Each case is a payment made now (recharge and its entry in the window), then moved or
-- edited; the comment says which path of the check settles it.
insert into ids select 'r_' || c, tests.pay((select id from ids where name = 'ann'), 'cs_t131_' || c, 100)
from unnest(array[
  'fine',              -- both changed, credited, same user and credits: settled in memory
  'old_entry',         -- recharge changed now (a refund), entry two days old: entry found by index
  'old_entry_credits', -- same, and the recharge now sells other credits: dangling, found by index
  'other_user',        -- both changed, entry moved to another user: dangling
  'other_amount',      -- both changed, entry amount edited: dangling
  'old_recharge',      -- entry changed, recharge untouched for two days and fine: probed, fine
  'old_uncredited',    -- entry changed, recharge untouched for two days and pending: dangling
  'missing',           -- entry changed, its recharge deleted: dangling
  'no_entry',          -- recharge changed, credited, its entry deleted: orphaned
  'uncredited'         -- recharge changed and set back to pending, entry changed: dangling, not orphaned
]) as c;
insert into ids
select 'e_' || substr(i.name, 3), t.id
from ids i join public.credit_transaction t on t.recharge_id = i.id and t.type = 'recharge'
where i.name like 'r\_%';

update public.credit_transaction set created_at = now() - interval '2 days'
where id in (select id from ids where name in ('e_old_entry', 'e_old_entry_credits'));
update public.credit_recharge set credits = 90 where id = (select id from ids where name = 'r_old_entry_credits');
update public.credit_transaction set user_id = (select id from ids where name = 'ben')
where id = (select id from ids where name = 'e_other_user');
update public.credit_transaction set amount = 70 where id = (select id from ids where name = 'e_other_amount');
update public.credit_recharge set created_at = now() - interval '2 days', updated_at = now() - interval '2 days'
where id in (select id from ids where name in ('r_old_recharge', 'r_old_uncredited'));
update public.credit_recharge set status = 'pending', completed_at = null
where id in (select id from ids where name in ('r_old_uncredited', 'r_uncredited'));
alter table public.credit_transaction drop constraint credit_transaction_recharge_id_fkey;
delete from public.credit_recharge where id = (select id from ids where name = 'r_missing');
delete from public.credit_transaction where id = (select id from ids where name = 'e_no_entry');
-- A recharge still pending (never credited) and changed: neither orphaned nor dangling.
insert into public.credit_recharge (user_id, credits, stripe_checkout_session_id)
values ((select id from ids where name = 'ann'), 5, 'cs_t131_pending');

update credit_private.settings set incremental_overlap = interval '5 minutes';
insert into credit_private.check_watermark (checker, checked_through, last_run_at)
values ('t131', now() - interval '10 minutes', now() - interval '10 minutes');
create temp table inc as select public.diagnose_credits_incremental('t131', max_rows => 100000) as r;

-- What the check examines: recharges changed in the window; recharge entries created in the
-- window, and the recharge entries of the changed recharges.
create temp table examined_recharge as
select r.id from public.credit_recharge r where r.updated_at > now() - interval '15 minutes';
create temp table examined_entry as
select t.id from public.credit_transaction t where t.created_at > now() - interval '15 minutes' and t.type = 'recharge'
union
select t.id from public.credit_transaction t join examined_recharge r on t.recharge_id = r.id where t.type = 'recharge';

select set_eq(
  $$ select id from tests.named((select r from inc), 'orphaned_recharges', 'recharge_id') $$,
  $$ select id::text from ids where name = 'r_no_entry' $$,
  'orphaned_recharges: only the changed, credited recharge without its entry');
select set_eq(
  $$ select id from tests.named((select r from inc), 'dangling_recharge_entries', 'transaction_id') $$,
  $$ select id::text from ids
     where name in ('e_old_entry_credits', 'e_other_user', 'e_other_amount', 'e_old_uncredited', 'e_missing', 'e_uncredited') $$,
  'dangling_recharge_entries: exactly the unjustified entries, whether settled from the changed rows or found by index');
select is(
  (select r #> '{categories,orphaned_recharges,findings}' from inc),
  (select coalesce(jsonb_agg(to_jsonb(v) order by v.completed_at, v.recharge_id), '[]')
   from credit_private.orphaned_recharges v where v.recharge_id in (select id from examined_recharge)),
  'orphaned_recharges: the view''s rows for every examined recharge, columns and order included');
select is(
  (select r #> '{categories,dangling_recharge_entries,findings}' from inc),
  (select coalesce(jsonb_agg(to_jsonb(v) order by v.created_at, v.transaction_id), '[]')
   from credit_private.dangling_recharge_entries v where v.transaction_id in (select id from examined_entry)),
  'dangling_recharge_entries: the view''s rows for every examined entry, columns and order included');
select is(
  (select f ->> 'problem'
   from inc, jsonb_array_elements(r #> '{categories,dangling_recharge_entries,findings}') f
   where f ->> 'transaction_id' = (select id::text from ids where name = 'e_old_entry_credits')),
  'it credits 100, its recharge sold 90', 'an old entry of a changed recharge is still checked against it');
select is(
  (select f ->> 'problem'
   from inc, jsonb_array_elements(r #> '{categories,dangling_recharge_entries,findings}') f
   where f ->> 'transaction_id' = (select id::text from ids where name = 'e_missing')),
  'its recharge does not exist', 'a changed entry whose recharge is gone says so');
select ok(
  (select id::text from ids where name = 'e_fine') not in
    (select id from tests.named((select r from inc), 'dangling_recharge_entries', 'transaction_id'))
  and (select id::text from ids where name = 'r_fine') not in
    (select id from tests.named((select r from inc), 'orphaned_recharges', 'recharge_id')),
  'a fresh payment is neither orphaned nor dangling');

-- The same answers when the check only looks (no watermark change) and when nothing is
-- settled from memory because nothing changed in the window.
select is(
  (select public.diagnose_credits_incremental('t131', advance => false, max_rows => 100000) -> 'categories')
    - 'installation' - 'failed_webhooks' - 'stuck_recharges',
  (select r -> 'categories' from inc) - 'installation' - 'failed_webhooks' - 'stuck_recharges',
  'a second look at the same window gives the same categories');
update credit_private.check_watermark set checked_through = now() + interval '1 hour' where checker = 't131';
select is(
  (select public.diagnose_credits_incremental('t131', advance => false) -> 'counts')
    - 'installation' - 'failed_webhooks' - 'stuck_recharges',
  '{"orphaned_recharges": 0, "dangling_recharge_entries": 0, "balance_mismatches": 0, "negative_balances": 0}'::jsonb,
  'an empty window finds nothing');

select * from finish();
rollback;
