// The endpoint's two records in the database: the failed-key counter per client
// (public.record_admin_auth_attempt) and the audit row of every call (public.log_admin_call,
// public.finish_admin_call). Both live in the database because edge isolates share no memory.
import type { SupabaseClient } from "@supabase/supabase-js";
import { callRpc } from "../_shared/rpc.ts";

const IP_LIKE = /^[0-9A-Fa-f.:]{2,45}$/;

/**
 * Who is calling, for the failure counter and the audit: the first X-Forwarded-For address
 * (what the platform's proxy saw), else the connection's own address, else "unknown". A
 * forwarded value that is not an IP address is ignored.
 */
export function clientAddress(req: Request, remoteAddr?: Deno.Addr): string {
  const forwarded = (req.headers.get("x-forwarded-for") ?? "").split(",")[0].trim();
  if (IP_LIKE.test(forwarded)) return forwarded;
  if (remoteAddr !== undefined && (remoteAddr.transport === "tcp" || remoteAddr.transport === "udp")) {
    return remoteAddr.hostname;
  }
  return "unknown";
}

export interface AuthAttempt {
  allowed: boolean;
  blocked: boolean;
  failures: number;
  retry_after_seconds: number | null;
}

export function recordAuthAttempt(
  db: SupabaseClient,
  client: string,
  succeeded: boolean,
): Promise<AuthAttempt> {
  return callRpc<AuthAttempt>(db, "record_admin_auth_attempt", { client, succeeded });
}

export interface AuditEntry {
  keyName: string;
  client: string;
  method: string;
  action: string | null;
  params: Record<string, unknown> | null;
  dryRun: boolean | null;
  reason: string | null;
}

export interface AuditOutcome {
  outcome: string;
  httpStatus: number;
  errorCode?: string | null;
  found?: number | null;
  changed?: number | null;
  runId?: string | null;
}

/** A refused call, logged with its final outcome. */
export function logRefusal(db: SupabaseClient, entry: AuditEntry, outcome: AuditOutcome): Promise<number> {
  return callRpc<number>(db, "log_admin_call", {
    ...entryArgs(entry),
    outcome: outcome.outcome,
    http_status: outcome.httpStatus,
    error_code: outcome.errorCode ?? null,
  });
}

/** An allowed call, logged before it acts; returns the row's id for finishCall. */
export function logStart(db: SupabaseClient, entry: AuditEntry): Promise<number> {
  return callRpc<number>(db, "log_admin_call", { ...entryArgs(entry), outcome: "started" });
}

export async function finishCall(db: SupabaseClient, callId: number, outcome: AuditOutcome): Promise<void> {
  await callRpc<null>(db, "finish_admin_call", {
    call_id: callId,
    outcome: outcome.outcome,
    http_status: outcome.httpStatus,
    error_code: outcome.errorCode ?? null,
    found_count: outcome.found ?? null,
    changed_count: outcome.changed ?? null,
    run_id: outcome.runId ?? null,
  });
}

function entryArgs(entry: AuditEntry) {
  return {
    key_name: entry.keyName,
    client: entry.client,
    method: entry.method.toUpperCase().replace(/[^A-Z]/g, "").slice(0, 16) || "UNKNOWN",
    action: entry.action,
    params: entry.params,
    dry_run: entry.dryRun,
    reason: entry.reason,
  };
}
