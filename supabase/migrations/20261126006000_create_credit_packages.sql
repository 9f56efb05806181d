-- Why: a buyer must pick from a catalogue the operator controls, never name a price or a
-- number of credits themselves. Each package maps one Stripe Price to a number of credits;
-- create-checkout reads it to build the Checkout Session and the pending recharge. Signed-in
-- users may read the catalogue; no API role may write it (operators edit it as postgres, in
-- the dashboard or a migration).

create table public.credit_packages (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  description text,
  stripe_price_id text not null,
  credits bigint not null,
  -- A display copy of the Stripe Price; the amount charged is always the Price's own.
  amount_cents bigint not null,
  currency text not null default 'usd',
  active boolean not null default true,
  sort_order bigint not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint credit_packages_name_not_blank check (length(btrim(name)) > 0),
  constraint credit_packages_stripe_price_id_shape check (stripe_price_id ~ '^price_[A-Za-z0-9_]+$'),
  constraint credit_packages_stripe_price_id_unique unique (stripe_price_id),
  constraint credit_packages_credits_positive check (credits > 0),
  constraint credit_packages_amount_not_negative check (amount_cents >= 0),
  constraint credit_packages_currency_iso check (currency ~ '^[a-z]{3}$')
);

create index credit_packages_active_sort_order_idx on public.credit_packages (sort_order, credits)
  where active;

alter table public.credit_packages enable row level security;

revoke all on public.credit_packages from public, anon, authenticated, service_role;
grant select on public.credit_packages to authenticated, service_role;

-- Inactive packages stay readable so that an old link can be answered with "no longer sold"
-- rather than "unknown"; clients list the ones with active = true.
create policy "Authenticated users can read the credit packages"
  on public.credit_packages for select to authenticated
  using (true);

comment on table public.credit_packages is
  'Credit packages on sale: one Stripe Price buys a fixed number of credits. Readable by signed-in users (RLS); written only by the owner, never by an API role. amount_cents and currency are a display copy of the Price.';
