// Calls the admin-fix-credits function through the gateway as an operator's curl does, with
// the keys npm test configures (scripts/test.sh), and reads what the endpoint leaves in the
// database: its audit rows, its failure counters, and a fingerprint of everything a repair
// could change. Each call names its own client address (X-Forwarded-For), so tests never
// share a failure counter and find their audit rows by it.
import { stack } from "./env.ts";
import type { Sql } from "./db.ts";
import { checkoutEvent, deliver } from "./stripe-events.ts";

// deno-lint-ignore no-explicit-any
export type Json = Record<string, any>;

function required(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`tests need ${name}: run them with npm test`);
  return value;
}

/** The keys the served function holds: ADMIN_API_KEY ("default") and ADMIN_API_KEYS. */
export const adminKeys = {
  default: required("ADMIN_API_KEY"),
  rotated: String(JSON.parse(required("ADMIN_API_KEYS"))["rotated-2026"]),
};

/** A fresh documentation address (RFC 3849), one per test or per client. */
export function newClient(): string {
  const hex = () => Math.floor(Math.random() * 0x10000).toString(16);
  return `2001:db8:${hex()}:${hex()}::${hex()}`;
}

export interface AdminCall {
  status: number;
  body: Json;
  headers: Headers;
}

export interface CallOptions {
  /** The Bearer token; null sends no Authorization header. Default: the default key. */
  key?: string | null;
  client?: string;
  method?: string;
  /** Sent as is instead of JSON.stringify(body). */
  rawBody?: string;
  headers?: Record<string, string>;
}

export async function callAdmin(body: unknown, options: CallOptions = {}): Promise<AdminCall> {
  const key = options.key === undefined ? adminKeys.default : options.key;
  const headers: Record<string, string> = {
    "content-type": "application/json",
    "x-forwarded-for": options.client ?? newClient(),
    ...(key === null ? {} : { authorization: `Bearer ${key}` }),
    ...options.headers,
  };
  const method = options.method ?? "POST";
  const response = await fetch(stack.functionUrl("admin-fix-credits"), {
    method,
    headers,
    body: method === "GET" || method === "HEAD" ? undefined : options.rawBody ?? JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {}, headers: response.headers };
}

/** The audit rows of one client, oldest first. */
export async function auditRows(sql: Sql, client: string): Promise<Json[]> {
  return await sql`select id, key_name, client, method, action, params, dry_run, reason, outcome,
      http_status::int as http_status, error_code, found, changed, run_id, created_at, finished_at
    from credit_private.admin_audit_log where client = ${client} order by id`;
}

/** The failure counter of one client, or undefined. */
export async function failureRow(sql: Sql, client: string): Promise<Json | undefined> {
  const [row] = await sql`select client, failures, blocked_until, expires_at
    from credit_private.admin_auth_failure where client = ${client}`;
  return row;
}

/**
 * Everything an action could change, as one hash: the ledger tables, the inbox, the
 * reconciliation state and runs, and (unless left out) the number of repair log rows. A dry
 * run logs what it would change, so dry runs are compared without the repair log. The admin
 * audit log and failure counters are never included: every call writes those on purpose.
 */
export async function fingerprint(sql: Sql, options: { repairLog?: boolean } = {}): Promise<string> {
  const repairLog = options.repairLog ?? true;
  const [row] = await sql`select md5(concat_ws('|',
      (select string_agg(r::text, ',' order by r.id) from public.credit_recharge r),
      (select string_agg(t::text, ',' order by t.id) from public.credit_transaction t),
      (select string_agg(b::text, ',' order by b.user_id) from public.user_credit_balance b),
      (select string_agg(e::text, ',' order by e.event_id) from credit_private.stripe_webhook_event e),
      (select string_agg(s::text, ',') from credit_private.stripe_reconciliation_state s),
      (select count(*)::text from credit_private.stripe_reconciliation_run),
      case when ${repairLog} then (select count(*)::text from credit_private.repair_log) end
    )) as hash`;
  return row.hash;
}

/** A user with one credited purchase of `credits`; returns the user and the recharge. */
export async function paidUser(
  sql: Sql,
  credits: number,
): Promise<{ userId: string; rechargeId: string; eventId: string }> {
  const [user] = await sql`insert into auth.users (email)
    values (${`admin-${crypto.randomUUID()}@test.local`}) returning id`;
  const event = checkoutEvent("checkout.session.completed", { userId: user.id, credits });
  const delivery = await deliver(event);
  if (delivery.status !== 200) throw new Error(`delivery failed: ${JSON.stringify(delivery.body)}`);
  const [recharge] = await sql`select id from public.credit_recharge
    where stripe_checkout_session_id = ${event.data.object.id}`;
  return { userId: user.id, rechargeId: recharge.id, eventId: event.id };
}

/**
 * Makes a recharge orphaned the way a half-failed webhook leaves it: the recharge stays
 * completed, its ledger entry is gone and the balance never got the credits.
 */
export async function orphan(sql: Sql, rechargeId: string): Promise<void> {
  const [entry] = await sql`delete from public.credit_transaction
    where recharge_id = ${rechargeId} and type = 'recharge' returning user_id, amount`;
  await sql`update public.user_credit_balance
    set balance = balance - ${entry.amount}, total_recharged = total_recharged - ${entry.amount}
    where user_id = ${entry.user_id}`;
}

export async function rechargeEntries(sql: Sql, rechargeId: string): Promise<number> {
  const [row] = await sql`select count(*)::int as n from public.credit_transaction
    where recharge_id = ${rechargeId} and type = 'recharge'`;
  return row.n;
}
