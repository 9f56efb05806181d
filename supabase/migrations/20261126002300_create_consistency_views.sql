-- Why: the three rows that must agree after every payment (recharge, ledger entry, cached
-- balance) drift in the field through data written before the package, hand edits and
-- failed deliveries. One view per kind of drift, each naming the rows (ids, user, amounts)
-- and the action that fixes it, so that the RPC, the psql script and a human in the SQL
-- editor all see the same findings. Kept in the private schema (no API role can read them);
-- security_invoker so they never lend their owner's rights to whoever reads them.
-- Thresholds come from credit_private.current_settings(), which fails loudly without its row.

create function credit_private.ledger_totals(
  p_user_id uuid,
  out balance bigint,
  out total_recharged bigint,
  out entries bigint
)
language sql
stable
security invoker
set search_path = ''
as $$
  select coalesce(sum(t.amount), 0)::bigint,
    coalesce(sum(t.amount) filter (where t.type = 'recharge'), 0)::bigint,
    count(*)
  from public.credit_transaction t
  where t.user_id = p_user_id
$$;

revoke execute on function credit_private.ledger_totals(uuid) from public, anon, authenticated, service_role;

comment on function credit_private.ledger_totals(uuid) is
  'What the ledger says a user''s cached totals must be: balance = sum(amount), total_recharged = sum of recharge entries, and the entry count. Reads the user''s entries by index.';

create view credit_private.orphaned_recharges
with (security_invoker = on)
as
select
  r.id as recharge_id,
  r.user_id,
  r.credits,
  r.amount_cents,
  r.currency,
  r.status,
  r.stripe_checkout_session_id,
  r.stripe_payment_intent_id,
  r.completed_at,
  r.updated_at,
  -- Scalar subqueries in the select list run only for the orphans found, one index probe
  -- each (idempotency key), never as a join against the whole ledger.
  (select k.id from public.credit_transaction k where k.idempotency_key = 'recharge:' || r.id::text)
    as key_held_by_transaction_id,
  coalesce(
    (select format(
       'Needs a human: the key recharge:%s is held by transaction %s (type %s, amount %s), which is not this recharge''s entry. Correct that entry by hand, then back-fill.',
       r.id, k.id, k.type, k.amount)
     from public.credit_transaction k where k.idempotency_key = 'recharge:' || r.id::text),
    format(
      'Back-fill its recharge entry (credits %s to user %s): select public.fix_orphaned_recharges(recharge_id => %L, dry_run => false, actor => ''...'', reason => ''...'');',
      r.credits, r.user_id, r.id)
  ) as suggested_action
from public.credit_recharge r
where r.completed_at is not null
  and not exists (
    select 1 from public.credit_transaction t
    where t.recharge_id = r.id and t.type = 'recharge'
  );

revoke all on credit_private.orphaned_recharges from public, anon, authenticated, service_role;

comment on view credit_private.orphaned_recharges is
  'Credited recharges (completed_at set: status completed or refunded) with no recharge ledger entry: paid, but the credits never reached the ledger. Repaired by fix_orphaned_recharges, which posts the entry through credit_private.credit_recharge.';

create view credit_private.dangling_recharge_entries
with (security_invoker = on)
as
select
  t.id as transaction_id,
  t.user_id,
  t.amount,
  t.recharge_id,
  t.idempotency_key,
  t.created_at,
  r.status as recharge_status,
  r.user_id as recharge_user_id,
  r.credits as recharge_credits,
  case
    when r.id is null then 'its recharge does not exist'
    when r.completed_at is null then format('its recharge is %s, never credited', r.status)
    when r.user_id <> t.user_id then format('its recharge belongs to user %s', r.user_id)
    else format('it credits %s, its recharge sold %s', t.amount, r.credits)
  end as problem,
  'Reported, not repaired: no completed payment justifies these credits. Look the payment up in Stripe: if it was paid, retry its event (public.retry_failed_webhooks); if not, take the credits back with a reviewed adjustment entry.'::text
    as suggested_action
from public.credit_transaction t
  left join public.credit_recharge r on r.id = t.recharge_id
where t.type = 'recharge'
  and (r.id is null or r.completed_at is null or r.user_id <> t.user_id or r.credits <> t.amount);

revoke all on credit_private.dangling_recharge_entries from public, anon, authenticated, service_role;

comment on view credit_private.dangling_recharge_entries is
  'Recharge ledger entries not justified by a credited recharge: the recharge is missing, not credited (pending, failed, expired), of another user, or sold a different number of credits. Never repaired automatically: that would invent or remove credits without a payment to show for it.';

create view credit_private.balance_mismatches
with (security_invoker = on)
as
with ledger as (
  select t.user_id,
    sum(t.amount)::bigint as balance,
    coalesce(sum(t.amount) filter (where t.type = 'recharge'), 0)::bigint as total_recharged,
    count(*) as entries
  from public.credit_transaction t
  group by t.user_id
)
select
  coalesce(b.user_id, l.user_id) as user_id,
  b.user_id is null as balance_row_missing,
  b.balance as cached_balance,
  coalesce(l.balance, 0) as ledger_balance,
  b.total_recharged as cached_total_recharged,
  coalesce(l.total_recharged, 0) as ledger_total_recharged,
  coalesce(l.entries, 0) as ledger_entries,
  format(
    'Recompute from the ledger (balance %s -> %s, total_recharged %s -> %s): select public.recompute_credit_balances(user_id => %L, dry_run => false, actor => ''...'', reason => ''...'');',
    coalesce(b.balance::text, 'missing'), coalesce(l.balance, 0), coalesce(b.total_recharged::text, 'missing'),
    coalesce(l.total_recharged, 0), coalesce(b.user_id, l.user_id)
  ) as suggested_action
from public.user_credit_balance b
  full join ledger l on l.user_id = b.user_id
where b.user_id is null
  or b.balance <> coalesce(l.balance, 0)
  or b.total_recharged <> coalesce(l.total_recharged, 0);

revoke all on credit_private.balance_mismatches from public, anon, authenticated, service_role;

comment on view credit_private.balance_mismatches is
  'Users whose cached balance or total_recharged differs from the ledger sums, and users with ledger entries but no balance row. The ledger is the truth: recompute_credit_balances rewrites the cached row to the sums.';

-- The same rows as the view, for given users only, by index: what the incremental check and
-- a one-user repair need, at a cost that does not grow with the ledger.
create function credit_private.balance_mismatches_for(p_user_ids uuid[])
returns setof credit_private.balance_mismatches
language sql
stable
security invoker
set search_path = ''
as $$
  select
    u.user_id,
    b.user_id is null,
    b.balance,
    l.balance,
    b.total_recharged,
    l.total_recharged,
    l.entries,
    format(
      'Recompute from the ledger (balance %s -> %s, total_recharged %s -> %s): select public.recompute_credit_balances(user_id => %L, dry_run => false, actor => ''...'', reason => ''...'');',
      coalesce(b.balance::text, 'missing'), l.balance, coalesce(b.total_recharged::text, 'missing'),
      l.total_recharged, u.user_id
    )
  from (select distinct x.user_id from unnest(p_user_ids) as x (user_id) where x.user_id is not null) u
    cross join lateral credit_private.ledger_totals(u.user_id) l
    left join public.user_credit_balance b on b.user_id = u.user_id
  where (b.user_id is null and l.entries > 0)
    or b.balance <> l.balance
    or b.total_recharged <> l.total_recharged
$$;

revoke execute on function credit_private.balance_mismatches_for(uuid[]) from public, anon, authenticated, service_role;

comment on function credit_private.balance_mismatches_for(uuid[]) is
  'credit_private.balance_mismatches restricted to the given users, computed per user by index (cost proportional to those users'' entries, not to the ledger).';

create view credit_private.failed_webhooks
with (security_invoker = on)
as
select
  e.event_id,
  e.type,
  e.status,
  e.attempts,
  e.last_error,
  e.last_error_code,
  e.received_at,
  e.updated_at,
  e.payment_intent_id,
  e.payload #>> '{data,object,id}' as stripe_object_id,
  coalesce(e.payload #>> '{data,object,client_reference_id}', e.payload #>> '{data,object,metadata,user_id}')
    as user_reference,
  coalesce(
    e.last_error_code = '42501' or e.last_error ilike '%row-level security%'
      or e.last_error ilike '%row level security%' or e.last_error ilike '%permission denied%',
    false
  ) as looks_like_permission_error,
  coalesce(e.status = 'failed' and e.last_error_code = any (s.retry_skip_error_codes), false) as needs_a_human,
  case
    when e.status = 'deferred' then format(
      'Its payment (%s) was never credited: check that payment in Stripe and retry the checkout event that credits it; this event then applies by itself.',
      coalesce(e.payment_intent_id, 'unknown'))
    when e.status = 'failed' and e.last_error_code = any (s.retry_skip_error_codes) then
      'Needs a human: the event itself is malformed or inconsistent (see last_error). Fix the cause (e.g. the user or the recharge), then retry this one event by id.'
    when e.last_error_code = '42501' or e.last_error ilike '%row-level security%'
      or e.last_error ilike '%row level security%' or e.last_error ilike '%permission denied%' then
      'A permission failure: run public.restore_credit_installation, then retry: select public.retry_failed_webhooks(event_id => ''' || e.event_id || ''', dry_run => false, actor => ''...'', reason => ''...'');'
    else
      'Retry from the stored payload: select public.retry_failed_webhooks(event_id => ''' || e.event_id || ''', dry_run => false, actor => ''...'', reason => ''...'');'
  end as suggested_action
from credit_private.stripe_webhook_event e
  cross join credit_private.current_settings() s
where e.status in ('received', 'failed', 'deferred')
  and (
    e.status = 'failed'
    or (e.status = 'received' and e.received_at < now() - s.failed_webhook_age)
    or (e.status = 'deferred' and e.received_at < now() - s.deferred_webhook_age)
  );

revoke all on credit_private.failed_webhooks from public, anon, authenticated, service_role;

comment on view credit_private.failed_webhooks is
  'Inbox events that failed, were received but not processed for longer than settings.failed_webhook_age, or stayed deferred (a refund or dispute whose payment never got credited) longer than settings.deferred_webhook_age; with attempts, last error, whether it looks like a permission failure and whether it needs a human. Reads only the partial index of unfinished events.';

create view credit_private.stuck_recharges
with (security_invoker = on)
as
select
  r.id as recharge_id,
  r.user_id,
  r.credits,
  r.amount_cents,
  r.currency,
  r.stripe_checkout_session_id,
  r.stripe_payment_intent_id,
  r.created_at,
  now() - r.created_at as age,
  u.event_id as unfinished_event_id,
  case
    when u.event_id is not null then format(
      'Its event %s is %s: retry it with public.retry_failed_webhooks(event_id => %L, ...).', u.event_id, u.status, u.event_id)
    else
      'Look the Checkout Session up in Stripe: if it was paid, resend its checkout.session.completed (or async_payment_succeeded) event; if not, its checkout.session.expired event closes it. Not repaired automatically: a pending recharge is no proof of payment.'
  end as suggested_action
from public.credit_recharge r
  cross join credit_private.current_settings() s
  left join lateral (
    select e.event_id, e.status
    from credit_private.stripe_webhook_event e
    where e.status in ('received', 'failed', 'deferred')
      and e.payload #>> '{data,object,id}' = r.stripe_checkout_session_id
    order by e.received_at desc
    limit 1
  ) u on true
where r.status = 'pending'
  and r.created_at < now() - s.stuck_recharge_age;

revoke all on credit_private.stuck_recharges from public, anon, authenticated, service_role;

comment on view credit_private.stuck_recharges is
  'Recharges still pending longer than settings.stuck_recharge_age (default 1 hour), with the unfinished inbox event of their session if there is one. Reads the partial index of pending recharges.';

create view credit_private.negative_balances
with (security_invoker = on)
as
select
  b.user_id,
  b.balance,
  b.total_recharged,
  b.updated_at,
  c.clawed_back,
  case
    when c.clawed_back >= -b.balance then
      'Expected after a refund or lost dispute took back credits already spent (documented policy): spending is refused until the user recharges. No repair.'
    else
      'Not explained by refunds or disputes: check balance_mismatches for this user and read the ledger.'
  end as suggested_action
from public.user_credit_balance b
  cross join lateral (
    select coalesce(-sum(t.amount), 0)::bigint as clawed_back
    from public.credit_transaction t
    where t.user_id = b.user_id and t.type in ('refund', 'dispute')
  ) c
where b.balance < 0;

revoke all on credit_private.negative_balances from public, anon, authenticated, service_role;

comment on view credit_private.negative_balances is
  'Users whose cached balance is below zero, with the credits refunds and disputes took back (net), which explain a negative balance when they exceed it.';
