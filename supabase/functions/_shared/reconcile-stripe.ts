// Reconciliation of the ledger with Stripe, the source of truth, in one bounded run:
//   1. events Stripe lists since the stored watermark that the inbox has not settled are fed
//      through public.handle_stripe_event (reconcile-events.ts);
//   2. pending recharges older than the threshold are settled from their retrieved Checkout
//      Session (reconcile-sessions.ts);
//   3. the watermark advances to what step 1 verified, never further, and the report is
//      stored. Used by the stripe-reconcile function and by the admin action reconcile_stripe.
import { callRpc } from "./rpc.ts";
import { type ReconcileDeps, RunContext } from "./reconcile-context.ts";
import { reconcileEvents } from "./reconcile-events.ts";
import { reconcileOptions, type ReconcileOptionsInput } from "./reconcile-options.ts";
import { emptyReport, isoFromEpoch, type ReconcileReport } from "./reconcile-report.ts";
import { reconcilePendingRecharges } from "./reconcile-sessions.ts";

export type { ReconcileDeps } from "./reconcile-context.ts";
export type { ReconcileReport } from "./reconcile-report.ts";
export {
  type ReconcileOptions,
  type ReconcileOptionsInput,
  reconcileOptionsSchema,
} from "./reconcile-options.ts";

/** How long Stripe keeps events (https://docs.stripe.com/api/events). */
export const STRIPE_EVENT_RETENTION_SECONDS = 30 * 86_400;

interface ReconciliationState {
  watermark: string | null;
}

const epochOf = (iso: string): number => Math.floor(Date.parse(iso) / 1000);

function retentionWarnings(
  report: ReconcileReport,
  watermark: number | null,
  now: number,
  warnAfter: number,
) {
  if (watermark === null) return;
  const age = now - watermark;
  const days = (age / 86_400).toFixed(1);
  if (age >= STRIPE_EVENT_RETENTION_SECONDS) {
    report.warnings.push(
      `the watermark is ${days} days old, beyond Stripe's 30-day event retention: events older than 30 days can no longer be checked against Stripe`,
    );
  } else if (age >= warnAfter) {
    report.warnings.push(
      `the watermark is ${days} days old; Stripe deletes events after 30 days: reconcile more often or fix what holds it back`,
    );
  }
}

async function advanceWatermark(
  ctx: RunContext,
  before: number | null,
  verified: number,
): Promise<number | null> {
  if (ctx.options.dryRun || (before !== null && verified <= before)) return before;
  try {
    const result = await callRpc<{ watermark: string }>(ctx.db, "advance_stripe_reconciliation_watermark", {
      watermark: isoFromEpoch(verified),
    });
    ctx.report.watermark.advanced = true;
    return epochOf(result.watermark);
  } catch (err) {
    ctx.fail("watermark.advance", err);
    return before;
  }
}

export async function reconcileStripe(
  deps: ReconcileDeps,
  input: ReconcileOptionsInput = {},
): Promise<ReconcileReport> {
  const options = reconcileOptions(input);
  const startedAt = new Date();
  const report = emptyReport(options, startedAt);
  const ctx = new RunContext(deps, options, report, startedAt.getTime());
  const now = Math.floor(startedAt.getTime() / 1000);

  let before: number | null = null;
  let after: number | null = null;
  try {
    const state = await callRpc<ReconciliationState>(deps.db, "get_stripe_reconciliation_state", {});
    before = state.watermark === null ? null : epochOf(state.watermark);
  } catch (err) {
    ctx.fail("watermark.read", err);
  }

  if (!ctx.halted) {
    const from = before ?? now - options.initialLookbackSeconds;
    const to = Math.max(from, now - options.settleSeconds);
    report.watermark.before = before === null ? null : isoFromEpoch(before);
    report.watermark.from = isoFromEpoch(from);
    report.watermark.to = isoFromEpoch(to);

    const verified = await reconcileEvents(ctx, from, to);
    report.watermark.verifiedUpTo = isoFromEpoch(verified);
    after = await advanceWatermark(ctx, before, verified);
    report.watermark.after = after === null ? null : isoFromEpoch(after);

    await reconcilePendingRecharges(ctx);
  }

  retentionWarnings(report, after ?? before, now, options.retentionWarningSeconds);
  if (report.events.failed > 0) {
    report.warnings.push(
      `${report.events.failed} event(s) failed and hold the watermark back: see their last_error in the inbox, fix the cause, then replay them`,
    );
  }
  const finishedAt = new Date();
  report.finishedAt = finishedAt.toISOString();
  report.durationMs = finishedAt.getTime() - startedAt.getTime();

  if (!options.dryRun) {
    try {
      await callRpc<number>(deps.db, "record_stripe_reconciliation_run", { report });
    } catch (err) {
      ctx.fail("report.store", err);
    }
  }
  return report;
}
