-- Why: the guide's first failure mode is a ledger that clients (or a mis-keyed webhook) can
-- write, or cannot read. Users may read only their own rows; nobody writes these tables
-- directly, not even service_role: every write goes through the package's RPCs, which are
-- SECURITY DEFINER and so are not blocked by RLS.

alter table public.credit_recharge enable row level security;
alter table public.credit_transaction enable row level security;
alter table public.user_credit_balance enable row level security;

revoke all on public.credit_recharge, public.credit_transaction, public.user_credit_balance
  from public, anon, authenticated, service_role;
grant select on public.credit_recharge, public.credit_transaction, public.user_credit_balance
  to authenticated, service_role;

create policy "Users can read their own recharges"
  on public.credit_recharge for select to authenticated
  using ((select auth.uid()) = user_id);

create policy "Users can read their own credit transactions"
  on public.credit_transaction for select to authenticated
  using ((select auth.uid()) = user_id);

create policy "Users can read their own credit balance"
  on public.user_credit_balance for select to authenticated
  using ((select auth.uid()) = user_id);
