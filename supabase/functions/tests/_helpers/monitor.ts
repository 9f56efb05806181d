// Helpers for the payment monitor's tests: a loopback Slack incoming webhook of the test's
// own (Slack cannot be reached from here), and a way to run the monitor on a known slate.
import type { Sql } from "./db.ts";
import { stack } from "./env.ts";

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

export interface SlackPost {
  body: Json;
  status: number;
}

export interface SlackReceiver {
  url: string;
  /** Every post received, in order, with the status it was answered. */
  readonly posts: SlackPost[];
  /** The next posts are answered with these statuses, in order, then 200 "ok" again. */
  failNext(statuses: number[]): void;
  /** Milliseconds to wait before answering each post. */
  delayMs: number;
  close(): Promise<void>;
}

export function startSlackReceiver(): SlackReceiver {
  const posts: SlackPost[] = [];
  const failures: number[] = [];
  const receiver = {
    posts,
    delayMs: 0,
    failNext(statuses: number[]) {
      failures.push(...statuses);
    },
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = await req.json();
    if (receiver.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, receiver.delayMs));
    const status = failures.shift() ?? 200;
    posts.push({ body, status });
    // Slack answers "ok" in plain text, and a short reason on errors.
    return new Response(status === 200 ? "ok" : "internal_error", { status });
  });
  return Object.assign(receiver, {
    url: `http://127.0.0.1:${server.addr.port}/services/T000/B000/XXXX`,
    close: () => server.shutdown(),
  });
}

/** Only what was posted successfully, by message text. */
export function deliveredTexts(receiver: SlackReceiver): string[] {
  return receiver.posts.filter((post) => post.status === 200).map((post) => String(post.body.text));
}

export function monitorRequest(method = "POST", key: string | null = stack.serviceRoleKey): Request {
  return new Request("http://127.0.0.1/functions/v1/payment-monitor", {
    method,
    headers: key === null ? {} : { authorization: `Bearer ${key}` },
    body: method === "POST" ? "{}" : undefined,
  });
}

/** One monitor run as pg_cron would do it (forced: the test stack keeps the schedule paused). */
export async function runMonitor(sql: Sql): Promise<Json> {
  const [row] = await sql`select credit_private.run_monitor(p_force => true) as r`;
  return row.r;
}

/**
 * A known slate for a monitor test: no alerts or messages, the check looking only at what
 * the test changes from now on, and whatever earlier tests left already run over once and
 * delivered. Automatic webhook retries are off, so that an event another test left failing
 * cannot come due (and change its alert) in the middle; a weekly report due now is produced
 * first, so that the hourly job cannot queue one in the middle. Returns the function that
 * restores the settings the tests may change.
 */
export async function isolateMonitor(sql: Sql): Promise<() => Promise<void>> {
  const [saved] = await sql`select incremental_overlap, monitor_enabled, auto_fix_orphaned_recharges,
    auto_recompute_balances, auto_retry_failed_webhooks from credit_private.settings`;
  await sql`update credit_private.settings set incremental_overlap = '0', auto_retry_failed_webhooks = false`;
  await sql`delete from credit_private.monitor_outbox`;
  await sql`delete from credit_private.monitor_alert`;
  await sql`select credit_private.produce_weekly_report_if_due()`;
  await runMonitor(sql);
  await sql`update credit_private.monitor_outbox set status = 'sent', sent_at = now() where status = 'pending'`;
  return async () => {
    await sql`update credit_private.settings set incremental_overlap = ${saved.incremental_overlap},
      monitor_enabled = ${saved.monitor_enabled}, auto_fix_orphaned_recharges = ${saved.auto_fix_orphaned_recharges},
      auto_recompute_balances = ${saved.auto_recompute_balances},
      auto_retry_failed_webhooks = ${saved.auto_retry_failed_webhooks}`;
  };
}

/** Queues one alert the way a monitor run does (raise_monitor_alert), with a unique fingerprint. */
export async function raiseTestAlert(sql: Sql, summary: string): Promise<string> {
  const fingerprint = `test:${crypto.randomUUID()}`;
  await sql`select credit_private.raise_monitor_alert(${fingerprint}, 'run_error', 'monitor', 'critical', 'sig',
    ${summary}, ${sql.json({ count: 1, rows: [{ id: "x", line: `line of ${summary}`, reason: "a test" }] })},
    null, '{}'::jsonb)`;
  return fingerprint;
}

export async function outboxRow(sql: Sql, fingerprint: string) {
  const [row] = await sql`select id, kind, title, status, attempts, last_error, claimed_until, next_attempt_at
    from credit_private.monitor_outbox where fingerprint = ${fingerprint} order by id desc limit 1`;
  return row;
}
