-- Why: the three rows that must agree after every payment (the guide's model), with every
-- invariant a constraint can hold enforced by the database itself, not by callers.

create table public.credit_recharge (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id),
  credits bigint not null,
  amount_cents bigint not null default 0,
  currency text not null default 'usd',
  status text not null default 'pending',
  stripe_checkout_session_id text,
  stripe_payment_intent_id text,
  refunded_cents bigint not null default 0,
  refunded_credits bigint not null default 0,
  stripe_dispute_id text,
  dispute_status text,
  disputed_credits bigint not null default 0,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint credit_recharge_credits_positive check (credits > 0),
  constraint credit_recharge_amount_not_negative check (amount_cents >= 0),
  constraint credit_recharge_currency_lowercase check (currency = lower(currency)),
  constraint credit_recharge_status_known
    check (status in ('pending', 'completed', 'failed', 'expired', 'refunded')),
  -- "credited" means completed_at is set; only completed and refunded recharges were credited.
  constraint credit_recharge_credited_has_completed_at
    check ((status in ('completed', 'refunded')) = (completed_at is not null)),
  constraint credit_recharge_clawback_within_credits
    check (refunded_credits >= 0 and disputed_credits >= 0 and refunded_credits + disputed_credits <= credits),
  constraint credit_recharge_session_unique unique (stripe_checkout_session_id),
  constraint credit_recharge_payment_intent_unique unique (stripe_payment_intent_id)
);

create index credit_recharge_user_id_idx on public.credit_recharge (user_id);
create index credit_recharge_pending_created_at_idx on public.credit_recharge (created_at)
  where status = 'pending';

comment on table public.credit_recharge is
  'One row per Checkout Session that buys credits. Credited exactly when completed_at is set (status completed or refunded), and then it has exactly one recharge ledger entry.';

create table public.credit_transaction (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references auth.users (id),
  type text not null,
  amount bigint not null,
  balance_after bigint not null,
  recharge_id uuid references public.credit_recharge (id),
  idempotency_key text not null,
  description text,
  created_at timestamptz not null default now(),
  constraint credit_transaction_type_known
    check (type in ('recharge', 'spend', 'refund', 'dispute', 'adjustment')),
  constraint credit_transaction_amount_not_zero check (amount <> 0),
  constraint credit_transaction_recharge_entry_positive_and_linked
    check (type <> 'recharge' or (amount > 0 and recharge_id is not null)),
  constraint credit_transaction_spend_negative_and_covered
    check (type <> 'spend' or (amount < 0 and balance_after >= 0)),
  constraint credit_transaction_refund_negative check (type <> 'refund' or amount < 0),
  constraint credit_transaction_idempotency_key_unique unique (idempotency_key)
);

-- At most one recharge entry per recharge: the last line of defence against double credit.
create unique index credit_transaction_one_recharge_entry_idx
  on public.credit_transaction (recharge_id) where type = 'recharge';
create index credit_transaction_recharge_id_idx on public.credit_transaction (recharge_id);
create index credit_transaction_user_id_created_at_idx on public.credit_transaction (user_id, created_at);
create index credit_transaction_created_at_idx on public.credit_transaction (created_at);

comment on table public.credit_transaction is
  'Append-only credit ledger. amount is signed (+ adds, - removes); balance_after is the balance right after the entry. A user''s balance is the sum of amount; written only by the package''s RPCs.';

create table public.user_credit_balance (
  user_id uuid primary key references auth.users (id),
  balance bigint not null default 0,
  total_recharged bigint not null default 0,
  updated_at timestamptz not null default now(),
  constraint user_credit_balance_total_recharged_not_negative check (total_recharged >= 0)
);

comment on table public.user_credit_balance is
  'Cached per-user totals of the ledger: balance = sum(amount), total_recharged = sum of recharge entries. May be negative after a refund or lost dispute; spending is then refused.';
