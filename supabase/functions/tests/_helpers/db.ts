// Direct PostgreSQL access for the tests' own setup and assertions (the code under test goes
// through the gateway). Each helper opens a small pool and closes it, so no test leaks one.
import postgres from "postgres";
import { stack } from "./env.ts";

export type Sql = postgres.Sql;

export async function withDb<T>(fn: (sql: Sql) => Promise<T>): Promise<T> {
  const sql = postgres(stack.dbUrl, { max: 4, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end();
  }
}

export async function createUser(sql: Sql): Promise<string> {
  const [row] = await sql`insert into auth.users (email)
    values (${`test-${crypto.randomUUID()}@test.local`}) returning id`;
  return row.id;
}

export interface LedgerState {
  balance: bigint;
  totalRecharged: bigint;
  ledgerSum: bigint;
  rechargeEntries: bigint;
  entries: number;
}

export async function ledgerState(sql: Sql, userId: string): Promise<LedgerState> {
  const [row] = await sql`
    select coalesce(b.balance, 0) as balance,
           coalesce(b.total_recharged, 0) as total_recharged,
           (select coalesce(sum(amount), 0) from public.credit_transaction where user_id = ${userId}) as ledger_sum,
           (select coalesce(sum(amount), 0) from public.credit_transaction
             where user_id = ${userId} and type = 'recharge') as recharge_entries,
           (select count(*) from public.credit_transaction where user_id = ${userId}) as entries
    from (select ${userId}::uuid as user_id) u
    left join public.user_credit_balance b on b.user_id = u.user_id`;
  return {
    balance: BigInt(row.balance),
    totalRecharged: BigInt(row.total_recharged),
    ledgerSum: BigInt(row.ledger_sum),
    rechargeEntries: BigInt(row.recharge_entries),
    entries: Number(row.entries),
  };
}

/**
 * The invariants of DESIGN.md for the given users; returns the violations found (empty when
 * all hold), so a failing assertion shows what broke.
 */
export async function invariantViolations(sql: Sql, userIds: string[]): Promise<string[]> {
  const rows = await sql`
    with users as (select unnest(${userIds}::uuid[]) as user_id)
    select 'balance differs from ledger for ' || u.user_id as violation
    from users u
    left join public.user_credit_balance b on b.user_id = u.user_id
    where coalesce(b.balance, 0) <> (select coalesce(sum(amount), 0) from public.credit_transaction t
                                     where t.user_id = u.user_id)
       or coalesce(b.total_recharged, 0) <> (select coalesce(sum(amount), 0) from public.credit_transaction t
                                             where t.user_id = u.user_id and t.type = 'recharge')
    union all
    select 'credited recharge ' || r.id || ' has ' || count(t.id) || ' recharge entries'
    from public.credit_recharge r
    left join public.credit_transaction t on t.recharge_id = r.id and t.type = 'recharge'
    where r.user_id in (select user_id from users) and r.completed_at is not null
    group by r.id
    having count(t.id) <> 1
    union all
    select 'recharge entry ' || t.id || ' has no credited recharge'
    from public.credit_transaction t
    left join public.credit_recharge r on r.id = t.recharge_id
    where t.user_id in (select user_id from users) and t.type = 'recharge'
      and (r.id is null or r.completed_at is null or r.credits <> t.amount)
    union all
    select 'spend took ' || t.user_id || ' below zero'
    from public.credit_transaction t
    where t.user_id in (select user_id from users) and t.type = 'spend' and t.balance_after < 0`;
  return rows.map((row) => row.violation as string);
}

export async function inboxRow(sql: Sql, eventId: string) {
  const [row] = await sql`select event_id, type, status, attempts, last_error, last_error_code
    from credit_private.stripe_webhook_event where event_id = ${eventId}`;
  return row;
}

export async function countRows(sql: Sql): Promise<Record<string, number>> {
  const [row] = await sql`select
    (select count(*) from credit_private.stripe_webhook_event)::int as inbox,
    (select count(*) from public.credit_recharge)::int as recharges,
    (select count(*) from public.credit_transaction)::int as transactions,
    (select count(*) from public.user_credit_balance)::int as balances`;
  return { ...row };
}
