// Calls the stripe-reconcile function as pg_cron does, and sets the reconciliation watermark
// directly (as postgres) so that each test starts from a known point.
import { stack } from "./env.ts";
import type { Sql } from "./db.ts";

// deno-lint-ignore no-explicit-any
export type Report = Record<string, any>;

export async function runReconcile(
  options: Record<string, unknown> = {},
  key: string = stack.serviceRoleKey,
): Promise<{ status: number; report: Report }> {
  const response = await fetch(stack.functionUrl("stripe-reconcile"), {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify(options),
  });
  return { status: response.status, report: await response.json() };
}

/** Sets the watermark `secondsAgo` before now, or removes it (null: the first run). */
export async function setWatermark(sql: Sql, secondsAgo: number | null): Promise<void> {
  await sql`delete from credit_private.stripe_reconciliation_state`;
  if (secondsAgo !== null) {
    await sql`insert into credit_private.stripe_reconciliation_state (events_watermark)
      values (now() - make_interval(secs => ${secondsAgo}))`;
  }
}

export async function watermarkEpoch(sql: Sql): Promise<number | null> {
  const [row] = await sql`select extract(epoch from events_watermark)::bigint as epoch
    from credit_private.stripe_reconciliation_state`;
  return row ? Number(row.epoch) : null;
}

/** Fast retries and no settle delay: the tests' events are created a moment before. */
export const quick = { retry: { baseDelayMs: 5, maxDelayMs: 20 }, maxSessions: 0 };
