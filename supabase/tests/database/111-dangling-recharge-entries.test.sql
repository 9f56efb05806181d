-- Test: dangling_recharge_entries: entries without a credited recharge (missing, uncredited, other user, other amount) are named and never "fixed".
begin;
select plan(10);

create temp table baseline as
select tests.named(public.diagnose_credits(100000), 'dangling_recharge_entries', 'transaction_id') as id;

create temp table ids (name text primary key, id uuid);
insert into ids values ('alice', tests.create_user()), ('bob', tests.create_user());
insert into ids select 'r_uncredited', tests.pay((select id from ids where name = 'alice'), 'cs_t111_1', 300);
insert into ids select 'r_other_user', tests.pay((select id from ids where name = 'alice'), 'cs_t111_2', 200);
insert into ids select 'r_other_amount', tests.pay((select id from ids where name = 'bob'), 'cs_t111_3', 100);
insert into ids select 'r_missing', tests.pay((select id from ids where name = 'bob'), 'cs_t111_4', 50);
insert into ids select 'r_fine', tests.pay((select id from ids where name = 'bob'), 'cs_t111_5', 10);
insert into ids
select 'e_' || substr(i.name, 3), t.id
from ids i join public.credit_transaction t on t.recharge_id = i.id and t.type = 'recharge'
where i.name like 'r\_%';

-- Hand edits: a credited recharge set back to pending; an entry moved to another user; an
-- entry's amount changed; a recharge deleted (its foreign key dropped first, as a bad
-- import would).
update public.credit_recharge set status = 'pending', completed_at = null
where id = (select id from ids where name = 'r_uncredited');
update public.credit_transaction set user_id = (select id from ids where name = 'bob')
where id = (select id from ids where name = 'e_other_user');
update public.credit_transaction set amount = 999
where id = (select id from ids where name = 'e_other_amount');
alter table public.credit_transaction drop constraint credit_transaction_recharge_id_fkey;
delete from public.credit_recharge where id = (select id from ids where name = 'r_missing');

create temp table report as select public.diagnose_credits(100000) as r;
create temp table findings as
select f from report, jsonb_array_elements(r #> '{categories,dangling_recharge_entries,findings}') f;

select set_eq(
  $$ select id from tests.named((select r from report), 'dangling_recharge_entries', 'transaction_id')
     except select id from baseline $$,
  $$ select id::text from ids where name in ('e_uncredited', 'e_other_user', 'e_other_amount', 'e_missing') $$,
  'the diagnosis names exactly the four unjustified recharge entries'
);
select is(
  (select f ->> 'problem' from findings where f ->> 'transaction_id' = (select id::text from ids where name = 'e_uncredited')),
  'its recharge is pending, never credited', 'an entry of an uncredited recharge says so');
select is(
  (select f ->> 'problem' from findings where f ->> 'transaction_id' = (select id::text from ids where name = 'e_missing')),
  'its recharge does not exist', 'an entry of a missing recharge says so');
select is(
  (select f ->> 'problem' from findings where f ->> 'transaction_id' = (select id::text from ids where name = 'e_other_user')),
  format('its recharge belongs to user %s', (select id from ids where name = 'alice')), 'an entry on the wrong user says so');
select is(
  (select row(f ->> 'problem', f ->> 'amount', f ->> 'recharge_credits', f ->> 'user_id')::text from findings
   where f ->> 'transaction_id' = (select id::text from ids where name = 'e_other_amount')),
  row('it credits 999, its recharge sold 100', '999', '100', (select id::text from ids where name = 'bob'))::text,
  'an entry with the wrong amount names both amounts and the user');
select ok(
  (select bool_and(f ->> 'suggested_action' like 'Reported, not repaired%') from findings),
  'every finding says it is reported, not repaired');

-- Nothing repairs them: no recharge is marked paid, no entry is removed or changed.
create temp table before_entries as
select t.* from public.credit_transaction t where t.id in (select id from ids where name like 'e\_%');
create temp table before_recharges as
select r.* from public.credit_recharge r where r.id in (select id from ids where name like 'r\_%');
select is(
  (select (public.fix_orphaned_recharges(recharge_id => (select id from ids where name = 'r_uncredited'), dry_run => false,
     actor => 'test-111', reason => 'try') ->> 'changed')::int),
  0, 'the back-fill refuses the uncredited recharge');
select public.fix_all_credits(dry_run => false, actor => 'test-111', reason => 'fix all');
select set_eq(
  $$ select t.* from public.credit_transaction t where t.id in (select id from ids where name like 'e\_%') $$,
  $$ select * from before_entries $$,
  'fix_all leaves the dangling entries as they are'
);
select set_eq(
  $$ select r.* from public.credit_recharge r where r.id in (select id from ids where name like 'r\_%') $$,
  $$ select * from before_recharges $$,
  'fix_all marks no recharge paid'
);
select set_eq(
  $$ select id from tests.named(public.diagnose_credits(100000), 'dangling_recharge_entries', 'transaction_id')
     except select id from baseline $$,
  $$ select id::text from ids where name in ('e_uncredited', 'e_other_user', 'e_other_amount', 'e_missing') $$,
  'after fix_all the diagnosis still names them'
);

select * from finish();
rollback;
