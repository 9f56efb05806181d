-- Generates consistent credit history for users number :first_user to :last_user, straight
-- into the tables (as the superuser, foreign-key triggers off), so millions of rows load in
-- minutes. Per user: 2 completed recharges of 100 credits, their 2 recharge entries and 8
-- spends of 1 credit, 30+ days old, and a balance row that agrees (192 of 200).
\set ON_ERROR_STOP on
set session_replication_role = replica;

insert into auth.users (id, email, created_at)
select md5('u' || n)::uuid, 'scale-' || n || '@bench.local', now() - interval '60 days'
from generate_series(:first_user, :last_user) n;

insert into public.credit_recharge
  (id, user_id, credits, amount_cents, currency, status, stripe_checkout_session_id, stripe_payment_intent_id,
   created_at, completed_at, updated_at)
select md5('r' || n || '-' || k)::uuid, md5('u' || n)::uuid, 100, 100, 'usd', 'completed',
  'cs_scale_' || n || '_' || k, 'pi_scale_' || n || '_' || k,
  now() - interval '40 days', now() - interval '40 days', now() - interval '40 days'
from generate_series(:first_user, :last_user) n, generate_series(1, 2) k;

insert into public.credit_transaction
  (user_id, type, amount, balance_after, recharge_id, idempotency_key, created_at)
select md5('u' || n)::uuid, 'recharge', 100, 100 * k, md5('r' || n || '-' || k)::uuid,
  'recharge:' || md5('r' || n || '-' || k)::uuid, now() - interval '40 days' + k * interval '1 second'
from generate_series(:first_user, :last_user) n, generate_series(1, 2) k;

insert into public.credit_transaction (user_id, type, amount, balance_after, idempotency_key, created_at)
select md5('u' || n)::uuid, 'spend', -1, 200 - s, 'spend:scale-' || n || '-' || s,
  now() - interval '35 days' + s * interval '1 second'
from generate_series(:first_user, :last_user) n, generate_series(1, 8) s;

insert into public.user_credit_balance (user_id, balance, total_recharged, updated_at)
select md5('u' || n)::uuid, 192, 200, now() - interval '35 days'
from generate_series(:first_user, :last_user) n;

reset session_replication_role;
