// The admin endpoint (the guide's POST /api/admin/fix-credits): one-click diagnosis, repair,
// retries, balance recomputation and reconciliation with Stripe, for operators holding an
// admin key. The gateway does not check a JWT here (verify_jwt = false): the function checks
// its own keys, so that neither the anon key, nor the service-role key, nor a user's token
// opens it.
//
// Every request, in this order:
//   1. the Bearer token is compared with every configured admin key (keys.ts);
//   2. the attempt is counted per client in the database: a client with too many failures
//      is refused (429, Retry-After) for a while, whatever key it sends;
//   3. no valid key: 401, the same answer for every cause; not POST: 405;
//   4. the JSON body is validated per action (request.ts): 400 naming the problem;
//   5. the call is audited BEFORE it acts (a row that says "started"), then the action's RPC
//      runs as the key's name (actions.ts), then the audit row gets the outcome.
// Refusals are audited too. Keys are never logged, echoed or stored: only their names are.
import type { SupabaseClient } from "@supabase/supabase-js";
import { readBodyText } from "../_shared/http.ts";
import type { ReconcileOptionsInput, ReconcileReport } from "../_shared/reconcile-stripe.ts";
import { RpcError } from "../_shared/rpc.ts";
import { type ActionResult, notFoundMessage, runAction } from "./actions.ts";
import {
  type AuditEntry,
  type AuditOutcome,
  type AuthAttempt,
  clientAddress,
  finishCall,
  logRefusal,
  logStart,
  recordAuthAttempt,
} from "./audit.ts";
import { type AdminKey, authenticate, UNAUTHENTICATED } from "./keys.ts";
import { type AdminRequest, auditParams, isAction, parseRequest } from "./request.ts";

export const MAX_BODY_BYTES = 16 * 1024;

export interface AdminFixCreditsDeps {
  /** The configured keys (keys.ts parseAdminKeys); at least one. */
  keys: AdminKey[];
  /** Service-role client: every RPC used is granted to service_role only. */
  db: SupabaseClient;
  /** The reconciliation with Stripe (_shared/reconcile-stripe.ts reconcileStripe). */
  reconcile: (options: ReconcileOptionsInput) => Promise<ReconcileReport>;
  log?: (message: string) => void;
}

/** Deno.serve's second argument; only the connection's address is used. */
export interface RequestInfo {
  remoteAddr?: Deno.Addr;
}

export type AdminFixCreditsHandler = (req: Request, info?: RequestInfo) => Promise<Response>;

/** Stable error codes: `code` of every error answer and `outcome` of its audit row. */
export type ErrorCode =
  | "unauthorized"
  | "rate_limited"
  | "method_not_allowed"
  | "payload_too_large"
  | "invalid_json"
  | "invalid_request"
  | "unknown_action"
  | "not_found"
  | "audit_unavailable"
  | "database_error"
  | "stripe_unavailable"
  | "reconcile_incomplete"
  | "internal_error";

const UNAUTHORIZED_MESSAGE = "a valid admin API key is required: Authorization: Bearer <admin-key>";

function reply(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  // Answers are about money and the installation: never cached by anything in between.
  return Response.json(body, { status, headers: { "cache-control": "no-store", ...headers } });
}

function errorReply(
  status: number,
  code: ErrorCode,
  error: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Response {
  return reply(status, { error, code, ...extra }, headers);
}

function describeError(err: unknown): string {
  if (err instanceof RpcError) return `${err.message}: ${err.detailForLog}`;
  return err instanceof Error ? err.stack ?? err.message : String(err);
}

/** The action a refused request asked for, if it names a known one (nothing else is kept). */
async function requestedAction(req: Request): Promise<string | null> {
  if (req.method !== "POST") return null;
  try {
    const text = await readBodyText(req, MAX_BODY_BYTES);
    if (text === null) return null;
    const body: unknown = JSON.parse(text);
    if (typeof body !== "object" || body === null) return null;
    const action = (body as Record<string, unknown>).action;
    return isAction(action) ? action : null;
  } catch {
    return null;
  }
}

export function createAdminFixCreditsHandler(deps: AdminFixCreditsDeps): AdminFixCreditsHandler {
  if (deps.keys.length === 0) throw new Error("admin-fix-credits needs at least one admin key");
  const log = deps.log ?? console.error;

  /** Answers a refusal and audits it; an audit failure is logged, the refusal stands. */
  async function refuse(
    entry: AuditEntry,
    status: number,
    code: ErrorCode,
    error: string,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ): Promise<Response> {
    try {
      await logRefusal(deps.db, entry, { outcome: code, httpStatus: status, errorCode: code });
    } catch (err) {
      log(`admin-fix-credits: audit of a refused call (${code}) failed: ${describeError(err)}`);
    }
    return errorReply(status, code, error, extra, headers);
  }

  async function act(
    entry: AuditEntry,
    request: AdminRequest,
    actor: string,
    reason: string,
  ): Promise<Response> {
    let callId: number;
    try {
      callId = await logStart(deps.db, entry);
    } catch (err) {
      // No audit row, no action.
      log(`admin-fix-credits: audit of ${request.action} failed, action not run: ${describeError(err)}`);
      return errorReply(
        500,
        "audit_unavailable",
        "the call could not be audited, so nothing was done; retry later",
      );
    }

    let response: Response;
    let outcome: AuditOutcome;
    try {
      const result: ActionResult = await runAction(deps, request, actor, reason);
      const body = {
        action: request.action,
        dryRun: request.dryRun,
        found: result.found,
        changed: result.changed,
        result: result.result,
      };
      const counts = { found: result.found, changed: result.changed, runId: result.runId ?? null };
      if (result.incomplete === "stripe_unavailable") {
        response = reply(502, {
          error: "Stripe could not be reached; see result.errors",
          code: result.incomplete,
          ...body,
        });
        outcome = { outcome: result.incomplete, httpStatus: 502, errorCode: result.incomplete, ...counts };
      } else if (result.incomplete === "reconcile_incomplete") {
        response = reply(500, {
          error: "the reconciliation did not finish; see result.errors and the function logs",
          code: result.incomplete,
          ...body,
        });
        outcome = { outcome: result.incomplete, httpStatus: 500, errorCode: result.incomplete, ...counts };
      } else {
        response = reply(200, body);
        outcome = { outcome: "ok", httpStatus: 200, ...counts };
      }
    } catch (err) {
      if (err instanceof RpcError && err.code === "PT404") {
        response = errorReply(404, "not_found", notFoundMessage(request));
        outcome = { outcome: "not_found", httpStatus: 404, errorCode: "not_found" };
      } else if (err instanceof RpcError && err.code === "22023") {
        log(`admin-fix-credits: ${request.action} refused by the database: ${describeError(err)}`);
        response = errorReply(
          400,
          "invalid_request",
          `invalid ${request.action} request: the database refused it`,
        );
        outcome = { outcome: "invalid_request", httpStatus: 400, errorCode: "invalid_request" };
      } else {
        const code: ErrorCode = err instanceof RpcError ? "database_error" : "internal_error";
        log(`admin-fix-credits: ${request.action} failed (${code}): ${describeError(err)}`);
        response = errorReply(
          500,
          code,
          `${request.action} failed (${code}); details are in the function logs`,
        );
        outcome = { outcome: code, httpStatus: 500, errorCode: code };
      }
    }

    try {
      await finishCall(deps.db, callId, outcome);
    } catch (err) {
      // The action ran (or failed) and the row says "started": that is what the log shows.
      log(
        `admin-fix-credits: audit row ${callId} could not be completed (${outcome.outcome}): ${
          describeError(err)
        }`,
      );
    }
    return response;
  }

  return async (req: Request, info?: RequestInfo): Promise<Response> => {
    const client = clientAddress(req, info?.remoteAddr);
    const keyName = await authenticate(req, deps.keys);
    const entry: AuditEntry = {
      keyName: keyName ?? UNAUTHENTICATED,
      client,
      method: req.method,
      action: null,
      params: null,
      dryRun: null,
      reason: null,
    };

    let attempt: AuthAttempt;
    try {
      attempt = await recordAuthAttempt(deps.db, client, keyName !== null);
    } catch (err) {
      log(`admin-fix-credits: the failed-attempt counter is unavailable: ${describeError(err)}`);
      if (keyName === null) {
        return await refuse(
          { ...entry, action: await requestedAction(req) },
          401,
          "unauthorized",
          UNAUTHORIZED_MESSAGE,
        );
      }
      return errorReply(
        500,
        "database_error",
        "the database is unavailable; details are in the function logs",
      );
    }

    if (attempt.blocked) {
      const retryAfter = Math.max(1, attempt.retry_after_seconds ?? 1);
      return await refuse(
        { ...entry, action: await requestedAction(req) },
        429,
        "rate_limited",
        "too many failed attempts from this client; retry later",
        { retryAfterSeconds: retryAfter },
        { "retry-after": String(retryAfter) },
      );
    }
    if (keyName === null) {
      return await refuse(
        { ...entry, action: await requestedAction(req) },
        401,
        "unauthorized",
        UNAUTHORIZED_MESSAGE,
      );
    }
    if (req.method !== "POST") {
      return await refuse(
        entry,
        405,
        "method_not_allowed",
        `method ${req.method} not allowed: use POST`,
        {},
        { allow: "POST" },
      );
    }

    const text = await readBodyText(req, MAX_BODY_BYTES);
    if (text === null) {
      return await refuse(entry, 413, "payload_too_large", `body larger than ${MAX_BODY_BYTES} bytes`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return await refuse(
        entry,
        400,
        "invalid_json",
        'body must be JSON: {"action": "...", "dryRun": false}',
      );
    }
    const parsed = parseRequest(json);
    if (!parsed.ok) {
      const action = typeof json === "object" && json !== null
        ? (json as Record<string, unknown>).action
        : null;
      return await refuse(
        { ...entry, action: isAction(action) ? action : null },
        400,
        parsed.code,
        parsed.error,
      );
    }

    const request = parsed.request;
    const reason = request.reason ?? `admin-fix-credits ${request.action}`;
    return await act(
      { ...entry, action: request.action, params: auditParams(request), dryRun: request.dryRun, reason },
      request,
      keyName,
      reason,
    );
  };
}
