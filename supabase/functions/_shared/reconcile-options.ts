// The knobs of one reconciliation run, validated once for every caller (the stripe-reconcile
// function's body, the admin endpoint's reconcile_stripe action, pg_cron's empty body). All
// are optional; the defaults suit a run every 15 minutes inside the edge time limit.
import { z } from "zod";
import { DEFAULT_RETRY_POLICY } from "./stripe-retry.ts";

const DAY = 86_400;

export const reconcileOptionsSchema = z.strictObject({
  /** Report what would be done; feed, resolve and store nothing. */
  dryRun: z.boolean().default(false),
  /** Events fed to handle_stripe_event per run (both passes together). */
  maxEvents: z.int().min(1).max(5_000).default(200),
  /** Events listed in one time window before the window is halved. */
  maxListedEvents: z.int().min(1).max(20_000).default(2_000),
  /** Pending recharges whose Checkout Session is retrieved per run. */
  maxSessions: z.int().min(0).max(1_000).default(50),
  /** The run stops starting new work after this long; the edge limit is 150 s or more. */
  timeBudgetMs: z.int().min(1_000).max(600_000).default(60_000),
  /** A pending recharge is checked once it is this old (default 1 hour). */
  pendingOlderThanSeconds: z.int().min(0).max(90 * DAY).default(3_600),
  /** Events younger than this are left to the next run (the webhook may still deliver them). */
  settleSeconds: z.int().min(0).max(DAY).default(60),
  /** Where the first run starts, before any watermark exists: Stripe keeps 30 days. */
  initialLookbackSeconds: z.int().min(0).max(31 * DAY).default(30 * DAY - 3_600),
  /** Warn when the watermark is older than this (Stripe deletes events after 30 days). */
  retentionWarningSeconds: z.int().min(0).max(31 * DAY).default(25 * DAY),
  /** Page size of the Stripe list calls (Stripe allows 1 to 100). */
  pageSize: z.int().min(1).max(100).default(100),
  retry: z.strictObject({
    maxRetries: z.int().min(0).max(10).default(DEFAULT_RETRY_POLICY.maxRetries),
    baseDelayMs: z.int().min(1).max(60_000).default(DEFAULT_RETRY_POLICY.baseDelayMs),
    maxDelayMs: z.int().min(1).max(60_000).default(DEFAULT_RETRY_POLICY.maxDelayMs),
  }).prefault({}),
});

export type ReconcileOptions = z.infer<typeof reconcileOptionsSchema>;
export type ReconcileOptionsInput = z.input<typeof reconcileOptionsSchema>;

/** Validated options with defaults filled in; throws a ZodError naming the bad fields. */
export function reconcileOptions(input: unknown = {}): ReconcileOptions {
  return reconcileOptionsSchema.parse(input ?? {});
}
