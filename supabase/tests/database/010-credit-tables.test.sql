-- Test: the credit tables, their keys, every check constraint refusing bad rows, and indexes.
-- Rows are inserted directly as the table owner (postgres) so that each constraint is tested
-- on its own; the RPCs that normally write these tables are tested in 030..060.
begin;
select plan(111);

select tests.create_user() as u1 \gset
select tests.create_user() as u2 \gset

-- ---------------------------------------------------------------------------------------
-- Tables and columns (the contract in DESIGN.md, plus the columns the RPCs rely on)
-- ---------------------------------------------------------------------------------------
select has_table('public', 'credit_recharge', 'public.credit_recharge exists');
select has_table('public', 'credit_transaction', 'public.credit_transaction exists');
select has_table('public', 'user_credit_balance', 'public.user_credit_balance exists');
select has_table('credit_private', 'stripe_webhook_event', 'credit_private.stripe_webhook_event (the inbox) exists');

select col_type_is(s, t, c, ty, format('%s.%s.%s is %s', s, t, c, ty))
from (values
  ('public', 'credit_recharge', 'id', 'uuid'),
  ('public', 'credit_recharge', 'user_id', 'uuid'),
  ('public', 'credit_recharge', 'credits', 'bigint'),
  ('public', 'credit_recharge', 'amount_cents', 'bigint'),
  ('public', 'credit_recharge', 'currency', 'text'),
  ('public', 'credit_recharge', 'status', 'text'),
  ('public', 'credit_recharge', 'stripe_checkout_session_id', 'text'),
  ('public', 'credit_recharge', 'stripe_payment_intent_id', 'text'),
  ('public', 'credit_recharge', 'refunded_cents', 'bigint'),
  ('public', 'credit_recharge', 'refunded_credits', 'bigint'),
  ('public', 'credit_recharge', 'disputed_credits', 'bigint'),
  ('public', 'credit_recharge', 'created_at', 'timestamp with time zone'),
  ('public', 'credit_recharge', 'completed_at', 'timestamp with time zone'),
  ('public', 'credit_transaction', 'id', 'uuid'),
  ('public', 'credit_transaction', 'user_id', 'uuid'),
  ('public', 'credit_transaction', 'type', 'text'),
  ('public', 'credit_transaction', 'amount', 'bigint'),
  ('public', 'credit_transaction', 'balance_after', 'bigint'),
  ('public', 'credit_transaction', 'recharge_id', 'uuid'),
  ('public', 'credit_transaction', 'idempotency_key', 'text'),
  ('public', 'credit_transaction', 'created_at', 'timestamp with time zone'),
  ('public', 'user_credit_balance', 'user_id', 'uuid'),
  ('public', 'user_credit_balance', 'balance', 'bigint'),
  ('public', 'user_credit_balance', 'total_recharged', 'bigint'),
  ('public', 'user_credit_balance', 'updated_at', 'timestamp with time zone'),
  ('credit_private', 'stripe_webhook_event', 'event_id', 'text'),
  ('credit_private', 'stripe_webhook_event', 'type', 'text'),
  ('credit_private', 'stripe_webhook_event', 'payload', 'jsonb'),
  ('credit_private', 'stripe_webhook_event', 'status', 'text'),
  ('credit_private', 'stripe_webhook_event', 'last_error', 'text'),
  ('credit_private', 'stripe_webhook_event', 'last_error_code', 'text'),
  ('credit_private', 'stripe_webhook_event', 'received_at', 'timestamp with time zone'),
  ('credit_private', 'stripe_webhook_event', 'processed_at', 'timestamp with time zone')
) as v(s, t, c, ty);

-- Columns that must never be null (a null user, amount or key would escape the invariants).
select is(
  array(
    select format('%s.%s', v.t, v.c)
    from (values
      ('credit_recharge', 'user_id'), ('credit_recharge', 'credits'), ('credit_recharge', 'amount_cents'),
      ('credit_recharge', 'currency'), ('credit_recharge', 'status'), ('credit_recharge', 'created_at'),
      ('credit_transaction', 'user_id'), ('credit_transaction', 'type'), ('credit_transaction', 'amount'),
      ('credit_transaction', 'balance_after'), ('credit_transaction', 'idempotency_key'),
      ('credit_transaction', 'created_at'),
      ('user_credit_balance', 'balance'), ('user_credit_balance', 'total_recharged')
    ) as v(t, c)
    join pg_attribute a on a.attrelid = format('public.%I', v.t)::regclass and a.attname = v.c
    where not a.attnotnull
  ),
  '{}'::text[],
  'the ledger''s essential columns are not null'
);
select ok(
  (select format_type(a.atttypid, a.atttypmod) in ('integer', 'bigint') from pg_attribute a
   where a.attrelid = 'credit_private.stripe_webhook_event'::regclass and a.attname = 'attempts'),
  'credit_private.stripe_webhook_event.attempts is an integer count');
select col_not_null('credit_private', 'stripe_webhook_event', 'payload', 'the inbox keeps the raw payload (not null)');

select col_default_is('public', 'credit_recharge', 'status', 'pending'::text, 'a recharge starts pending');
select col_default_is('public', 'user_credit_balance', 'balance', 0, 'a balance starts at 0');
select col_default_is('credit_private', 'stripe_webhook_event', 'attempts', 0, 'an inbox row starts with 0 attempts');

-- ---------------------------------------------------------------------------------------
-- Primary, unique and foreign keys
-- ---------------------------------------------------------------------------------------
select col_is_pk('public', 'credit_recharge', 'id', 'credit_recharge is keyed by id');
select col_is_pk('public', 'credit_transaction', 'id', 'credit_transaction is keyed by id');
select col_is_pk('public', 'user_credit_balance', 'user_id', 'user_credit_balance is keyed by user_id');
select col_is_pk('credit_private', 'stripe_webhook_event', 'event_id', 'the inbox is keyed by the Stripe event id');

select col_is_unique('public', 'credit_recharge', array['stripe_checkout_session_id'], 'a Checkout Session has one recharge');
select col_is_unique('public', 'credit_recharge', array['stripe_payment_intent_id'], 'a PaymentIntent pays one recharge');
select col_is_unique('public', 'credit_transaction', array['idempotency_key'], 'a ledger idempotency key is used once');

select fk_ok('public', 'credit_recharge', 'user_id', 'auth', 'users', 'id', 'credit_recharge.user_id references auth.users');
select fk_ok('public', 'credit_transaction', 'user_id', 'auth', 'users', 'id', 'credit_transaction.user_id references auth.users');
select fk_ok('public', 'credit_transaction', 'recharge_id', 'public', 'credit_recharge', 'id', 'credit_transaction.recharge_id references credit_recharge');
select fk_ok('public', 'user_credit_balance', 'user_id', 'auth', 'users', 'id', 'user_credit_balance.user_id references auth.users');

-- ---------------------------------------------------------------------------------------
-- credit_recharge: valid rows are accepted, each bad row is refused by its own constraint
-- ---------------------------------------------------------------------------------------
select lives_ok(
  format($$insert into public.credit_recharge (id, user_id, credits, amount_cents, stripe_checkout_session_id, stripe_payment_intent_id)
           values ('10000000-0000-4000-8000-000000000001', %L, 100, 1000, 'cs_t010_ok', 'pi_t010_ok')$$, :'u1'),
  'a pending recharge with positive credits is accepted'
);
select lives_ok(
  format($$insert into public.credit_recharge (user_id, credits, status, completed_at, stripe_checkout_session_id)
           values (%L, 1, 'completed', now(), 'cs_t010_done')$$, :'u1'),
  'a completed recharge with completed_at is accepted'
);
select lives_ok(
  format($$insert into public.credit_recharge (user_id, credits, status, stripe_checkout_session_id, stripe_payment_intent_id)
           values (%L, 1, 'pending', null, null), (%L, 1, 'pending', null, null)$$, :'u1', :'u1'),
  'recharges without Stripe ids yet do not collide (nulls are distinct)'
);

select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits) values (%L, 0)$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_credits_positive"',
  'credit_recharge refuses 0 credits'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits) values (%L, -5)$$, :'u1'),
  '23514', null,
  'credit_recharge refuses negative credits (a check constraint fires)'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, amount_cents) values (%L, 1, -1)$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_amount_not_negative"',
  'credit_recharge refuses a negative amount'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, currency) values (%L, 1, 'USD')$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_currency_lowercase"',
  'credit_recharge refuses an upper-case currency (Stripe uses lower case)'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, status) values (%L, 1, 'paid')$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_status_known"',
  'credit_recharge refuses an unknown status'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, status) values (%L, 1, 'completed')$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_credited_has_completed_at"',
  'a completed recharge must have completed_at'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, status) values (%L, 1, 'refunded')$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_credited_has_completed_at"',
  'a refunded recharge must have completed_at (it was credited)'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, status, completed_at) values (%L, 1, 'pending', now())$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_credited_has_completed_at"',
  'a pending recharge cannot have completed_at'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, status, completed_at) values (%L, 1, 'failed', now())$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_credited_has_completed_at"',
  'a failed recharge cannot have completed_at'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, refunded_credits) values (%L, 10, 11)$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_clawback_within_credits"',
  'more credits refunded than sold is refused'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, refunded_credits, disputed_credits) values (%L, 10, 6, 5)$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_clawback_within_credits"',
  'refunded plus disputed credits above the credits sold is refused'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, disputed_credits) values (%L, 10, -1)$$, :'u1'),
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_clawback_within_credits"',
  'negative disputed credits are refused'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, stripe_checkout_session_id) values (%L, 1, 'cs_t010_ok')$$, :'u2'),
  '23505', 'duplicate key value violates unique constraint "credit_recharge_session_unique"',
  'a second recharge for the same Checkout Session is refused'
);
select throws_ok(
  format($$insert into public.credit_recharge (user_id, credits, stripe_payment_intent_id) values (%L, 1, 'pi_t010_ok')$$, :'u2'),
  '23505', 'duplicate key value violates unique constraint "credit_recharge_payment_intent_unique"',
  'a second recharge for the same PaymentIntent is refused'
);
select throws_ok(
  $$insert into public.credit_recharge (user_id, credits) values ('10000000-0000-4000-8000-00000000dead', 1)$$,
  '23503', 'insert or update on table "credit_recharge" violates foreign key constraint "credit_recharge_user_id_fkey"',
  'a recharge for a user that does not exist is refused'
);
select throws_ok(
  $$insert into public.credit_recharge (user_id, credits) values (null, 1)$$,
  '23502', null, 'a recharge without a user is refused'
);
select throws_ok(
  $$update public.credit_recharge set refunded_credits = 101 where id = '10000000-0000-4000-8000-000000000001'$$,
  '23514', 'new row for relation "credit_recharge" violates check constraint "credit_recharge_clawback_within_credits"',
  'constraints hold on update too (refunded_credits above credits)'
);

-- ---------------------------------------------------------------------------------------
-- credit_transaction
-- ---------------------------------------------------------------------------------------
select lives_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, recharge_id, idempotency_key)
           values (%L, 'recharge', 100, 100, '10000000-0000-4000-8000-000000000001', 't010:recharge')$$, :'u1'),
  'a recharge entry linked to its recharge is accepted'
);
select lives_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, recharge_id, idempotency_key)
           values (%L, 'refund', -10, 90, '10000000-0000-4000-8000-000000000001', 't010:refund'),
                  (%L, 'dispute', -20, 70, '10000000-0000-4000-8000-000000000001', 't010:dispute-hold'),
                  (%L, 'dispute', 20, 90, '10000000-0000-4000-8000-000000000001', 't010:dispute-restore')$$,
         :'u1', :'u1', :'u1'),
  'other entries may share the recharge (the one-recharge-entry index is partial); dispute entries go both ways'
);
select lives_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'spend', -90, 0, 't010:spend'), (%L, 'adjustment', -5, -5, 't010:adj-'), (%L, 'adjustment', 5, 0, 't010:adj+')$$,
         :'u1', :'u1', :'u1'),
  'a spend down to exactly 0 and adjustments of either sign are accepted'
);

select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'bonus', 1, 1, 't010:bad-type')$$, :'u1'),
  '23514', 'new row for relation "credit_transaction" violates check constraint "credit_transaction_type_known"',
  'credit_transaction refuses an unknown type'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'adjustment', 0, 0, 't010:zero')$$, :'u1'),
  '23514', 'new row for relation "credit_transaction" violates check constraint "credit_transaction_amount_not_zero"',
  'credit_transaction refuses a zero amount'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, recharge_id, idempotency_key)
           values (%L, 'recharge', -1, 0, '10000000-0000-4000-8000-000000000001', 't010:neg-recharge')$$, :'u1'),
  '23514', 'new row for relation "credit_transaction" violates check constraint "credit_transaction_recharge_entry_positive_and_linked"',
  'a recharge entry must add credits'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'recharge', 10, 10, 't010:unlinked-recharge')$$, :'u1'),
  '23514', 'new row for relation "credit_transaction" violates check constraint "credit_transaction_recharge_entry_positive_and_linked"',
  'a recharge entry must name its recharge'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'spend', 5, 5, 't010:pos-spend')$$, :'u1'),
  '23514', 'new row for relation "credit_transaction" violates check constraint "credit_transaction_spend_negative_and_covered"',
  'a spend must remove credits'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'spend', -5, -1, 't010:overdraft')$$, :'u1'),
  '23514', 'new row for relation "credit_transaction" violates check constraint "credit_transaction_spend_negative_and_covered"',
  'a spend may never leave the balance below zero'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'refund', 5, 5, 't010:pos-refund')$$, :'u1'),
  '23514', 'new row for relation "credit_transaction" violates check constraint "credit_transaction_refund_negative"',
  'a refund entry must remove credits'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, recharge_id, idempotency_key)
           values (%L, 'recharge', 100, 200, '10000000-0000-4000-8000-000000000001', 't010:second-recharge')$$, :'u1'),
  '23505', 'duplicate key value violates unique constraint "credit_transaction_one_recharge_entry_idx"',
  'a second recharge entry for the same recharge is refused (even under another key)'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'adjustment', 1, 1, 't010:spend')$$, :'u2'),
  '23505', 'duplicate key value violates unique constraint "credit_transaction_idempotency_key_unique"',
  'an idempotency key cannot be used twice, whoever the user'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, recharge_id, idempotency_key)
           values (%L, 'refund', -1, 0, '10000000-0000-4000-8000-00000000beef', 't010:ghost-recharge')$$, :'u1'),
  '23503', 'insert or update on table "credit_transaction" violates foreign key constraint "credit_transaction_recharge_id_fkey"',
  'an entry cannot name a recharge that does not exist'
);
select throws_ok(
  $$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
    values ('10000000-0000-4000-8000-00000000dead', 'adjustment', 1, 1, 't010:ghost-user')$$,
  '23503', 'insert or update on table "credit_transaction" violates foreign key constraint "credit_transaction_user_id_fkey"',
  'an entry cannot name a user that does not exist'
);
select throws_ok(
  format($$insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key)
           values (%L, 'adjustment', 1, 1, null)$$, :'u1'),
  '23502', null, 'an entry without an idempotency key is refused'
);

-- ---------------------------------------------------------------------------------------
-- user_credit_balance
-- ---------------------------------------------------------------------------------------
select lives_ok(
  format($$insert into public.user_credit_balance (user_id, balance, total_recharged) values (%L, -40, 100)$$, :'u1'),
  'a negative balance is allowed (a clawback after spending; spending is then refused)'
);
select throws_ok(
  format($$insert into public.user_credit_balance (user_id, balance, total_recharged) values (%L, 0, -1)$$, :'u2'),
  '23514', 'new row for relation "user_credit_balance" violates check constraint "user_credit_balance_total_recharged_not_negative"',
  'total_recharged cannot be negative'
);
select throws_ok(
  format($$insert into public.user_credit_balance (user_id) values (%L)$$, :'u1'),
  '23505', 'duplicate key value violates unique constraint "user_credit_balance_pkey"',
  'a user has one balance row'
);
select throws_ok(
  $$insert into public.user_credit_balance (user_id) values ('10000000-0000-4000-8000-00000000dead')$$,
  '23503', 'insert or update on table "user_credit_balance" violates foreign key constraint "user_credit_balance_user_id_fkey"',
  'a balance cannot belong to a user that does not exist'
);

-- ---------------------------------------------------------------------------------------
-- credit_private.stripe_webhook_event (the inbox)
-- ---------------------------------------------------------------------------------------
select lives_ok(
  $$insert into credit_private.stripe_webhook_event (event_id, type, payload) values ('evt_t010_ok', 'x.y', '{}')$$,
  'an inbox row is accepted'
);
select is(
  (select status from credit_private.stripe_webhook_event where event_id = 'evt_t010_ok'),
  'received', 'an inbox row starts as received'
);
select throws_ok(
  $$insert into credit_private.stripe_webhook_event (event_id, type, payload) values ('evt_t010_ok', 'x.y', '{}')$$,
  '23505', 'duplicate key value violates unique constraint "stripe_webhook_event_pkey"',
  'an event id is stored once'
);
select throws_ok(
  $$insert into credit_private.stripe_webhook_event (event_id, type, payload, status) values ('evt_t010_bad', 'x.y', '{}', 'done')$$,
  '23514', 'new row for relation "stripe_webhook_event" violates check constraint "stripe_webhook_event_status_known"',
  'an inbox row refuses an unknown status'
);
select throws_ok(
  $$insert into credit_private.stripe_webhook_event (event_id, type, payload, attempts) values ('evt_t010_neg', 'x.y', '{}', -1)$$,
  '23514', 'new row for relation "stripe_webhook_event" violates check constraint "stripe_webhook_event_attempts_not_negative"',
  'an inbox row refuses negative attempts'
);
select lives_ok(
  $$insert into credit_private.stripe_webhook_event (event_id, type, payload, status)
    select 'evt_t010_status_' || s, 'x.y', '{}', s
    from unnest(array['received', 'processed', 'failed', 'ignored', 'deferred']) s$$,
  'the inbox accepts every documented status'
);
-- PostgreSQL 15 re-reads CHECK constraints on every write: the value lists are stored as one
-- constant array each (migration 20261126008100), and validated.
select is(
  array(
    select conname::text from pg_constraint
    where conname in ('credit_recharge_status_known', 'credit_recharge_credited_has_completed_at',
                      'credit_transaction_type_known', 'stripe_webhook_event_status_known')
      and convalidated and pg_get_constraintdef(oid) not like '%ARRAY[%'
    order by 1),
  array['credit_recharge_credited_has_completed_at', 'credit_recharge_status_known',
        'credit_transaction_type_known', 'stripe_webhook_event_status_known'],
  'the value-list constraints are constant arrays, validated'
);

-- ---------------------------------------------------------------------------------------
-- Indexes
-- ---------------------------------------------------------------------------------------
select has_index('public', 'credit_transaction', 'credit_transaction_one_recharge_entry_idx', array['recharge_id'],
  'the one-recharge-entry index exists on recharge_id');
select index_is_unique('public', 'credit_transaction', 'credit_transaction_one_recharge_entry_idx',
  'the one-recharge-entry index is unique');
select is(
  (select pg_get_expr(i.indpred, i.indrelid) from pg_index i
   where i.indexrelid = 'public.credit_transaction_one_recharge_entry_idx'::regclass),
  '(type = ''recharge''::text)', 'the one-recharge-entry index covers recharge entries only'
);
select has_index('public', 'credit_recharge', 'credit_recharge_user_id_idx', array['user_id'],
  'credit_recharge is indexed on user_id');
select has_index('public', 'credit_transaction', 'credit_transaction_user_id_created_at_idx', array['user_id', 'created_at'],
  'credit_transaction is indexed on (user_id, created_at) for a user''s history');
select has_index('public', 'credit_transaction', 'credit_transaction_recharge_id_idx', array['recharge_id'],
  'credit_transaction.recharge_id (a foreign key) is indexed');
select has_index('public', 'credit_recharge', 'credit_recharge_pending_created_at_idx', array['created_at'],
  'pending recharges are indexed by age');
select has_index('credit_private', 'stripe_webhook_event', 'stripe_webhook_event_deferred_payment_intent_idx',
  array['payment_intent_id'], 'deferred events are indexed by payment intent');
select has_index('credit_private', 'stripe_webhook_event', 'stripe_webhook_event_unfinished_idx',
  array['status', 'received_at'], 'unfinished inbox rows are indexed');

-- Every RLS policy filters on user_id: it must lead an index on each table, whatever its name.
select is(
  array(
    select c.relname::text
    from pg_class c
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = 'public'
      and c.relname in (select p.tablename from pg_policies p where p.schemaname = 'public'
                        and p.qual like '%user_id%')
      and not exists (
        select 1 from pg_index i
        join pg_attribute a on a.attrelid = i.indrelid and a.attnum = i.indkey[0]
        where i.indrelid = c.oid and a.attname = 'user_id'
      )
    order by 1
  ),
  '{}'::text[], 'every table whose policies filter on user_id has an index led by user_id'
);
select is(
  (select count(distinct p.tablename)::int from pg_policies p
   where p.schemaname = 'public' and p.qual like '%user_id%'
     and p.tablename in ('credit_recharge', 'credit_transaction', 'user_credit_balance')),
  3, 'the three credit tables have policies on user_id (so the check above covers them)'
);

select * from finish();
rollback;
