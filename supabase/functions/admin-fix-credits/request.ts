// The request body: {"action": "...", ...params, "dryRun": false, "reason": "..."}, camelCase
// params as in the guide. Each action has its own strict schema, so a missing, malformed or
// unknown field is refused with a message naming it.
import { z } from "zod";
import { reconcileOptionsSchema } from "../_shared/reconcile-stripe.ts";

export const ACTIONS = [
  "diagnose",
  "fix_all",
  "fix_orphaned_recharges",
  "fix_specific_recharge",
  "recalculate_balance",
  "recalculate_all_balances",
  "retry_failed_webhooks",
  "reconcile_stripe",
] as const;

export type ActionName = typeof ACTIONS[number];

export function isAction(value: unknown): value is ActionName {
  return typeof value === "string" && (ACTIONS as readonly string[]).includes(value);
}

const required = (what: string) => (issue: { input: unknown }) =>
  issue.input === undefined ? `required (${what})` : `must be ${what}`;

const common = {
  /** Report what would change and change nothing. */
  dryRun: z.boolean({ error: "must be true or false" }).default(false),
  /** Why the call is made (a ticket, an incident); recorded with every change. */
  reason: z.string({ error: "must be a string" }).trim().min(1, "must not be blank").max(
    500,
    "must be at most 500 characters",
  ).optional(),
};

const uuid = z.uuid({ error: required("a uuid") });
const stripeEventId = z.string({ error: required("a Stripe event id, evt_...") }).regex(
  /^evt_[A-Za-z0-9_]{1,250}$/,
  "must be a Stripe event id, evt_...",
);

export const requestSchemas = {
  diagnose: z.strictObject({
    action: z.literal("diagnose"),
    ...common,
    /** Findings listed per category (counts stay exact); default settings.max_report_rows. */
    maxRows: z.int({ error: "must be an integer from 0 to 10000" }).min(0).max(10_000).optional(),
  }),
  fix_all: z.strictObject({ action: z.literal("fix_all"), ...common }),
  fix_orphaned_recharges: z.strictObject({ action: z.literal("fix_orphaned_recharges"), ...common }),
  fix_specific_recharge: z.strictObject({
    action: z.literal("fix_specific_recharge"),
    ...common,
    rechargeId: uuid,
  }),
  recalculate_balance: z.strictObject({ action: z.literal("recalculate_balance"), ...common, userId: uuid }),
  recalculate_all_balances: z.strictObject({ action: z.literal("recalculate_all_balances"), ...common }),
  retry_failed_webhooks: z.strictObject({
    action: z.literal("retry_failed_webhooks"),
    ...common,
    eventId: stripeEventId.optional(),
  }),
  reconcile_stripe: z.strictObject({
    action: z.literal("reconcile_stripe"),
    ...common,
    /** The knobs of the stripe-reconcile function (maxEvents, maxSessions, ...); dryRun is above. */
    options: reconcileOptionsSchema.omit({ dryRun: true }).optional(),
  }),
} satisfies Record<ActionName, z.ZodType>;

export type AdminRequest = { [A in ActionName]: z.infer<(typeof requestSchemas)[A]> }[ActionName];

export type Parsed =
  | { ok: true; request: AdminRequest }
  | { ok: false; code: "invalid_request" | "unknown_action"; error: string };

function describe(issue: z.core.$ZodIssue): string {
  if (issue.code === "unrecognized_keys") {
    return `unknown field${issue.keys.length > 1 ? "s" : ""} ${
      issue.keys.map((key) => JSON.stringify(key.slice(0, 64))).join(", ")
    }`;
  }
  const path = issue.path.map(String).join(".");
  return path === "" ? issue.message : `${path}: ${issue.message}`;
}

/** Validates a parsed JSON body; the error names what is wrong (never echoes values). */
export function parseRequest(body: unknown): Parsed {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return { ok: false, code: "invalid_request", error: 'body must be a JSON object: {"action": "..."}' };
  }
  const action = (body as Record<string, unknown>).action;
  if (action === undefined) {
    return { ok: false, code: "invalid_request", error: `action is required: one of ${ACTIONS.join(", ")}` };
  }
  if (!isAction(action)) {
    return { ok: false, code: "unknown_action", error: `unknown action: use one of ${ACTIONS.join(", ")}` };
  }
  const result = requestSchemas[action].safeParse(body);
  if (!result.success) {
    return {
      ok: false,
      code: "invalid_request",
      error: `invalid ${action} request: ${result.error.issues.map(describe).join("; ")}`,
    };
  }
  return { ok: true, request: result.data as AdminRequest };
}

/** The params the audit log records: the request without action, dryRun and reason (columns). */
export function auditParams(request: AdminRequest): Record<string, unknown> {
  const { action: _action, dryRun: _dryRun, reason: _reason, ...params } = request;
  return params;
}
