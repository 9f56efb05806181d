// Settles recharges left pending: for each one older than the threshold, retrieves its
// Checkout Session from Stripe (PaymentIntent expanded, to see a failed bank debit) and hands
// it to public.resolve_pending_recharge, which applies it through the core's checkout path
// under the webhook's locks. A session Stripe does not know is recorded as such and left
// pending; any other error leaves the recharge untouched for the next run.
import Stripe from "stripe";
import { callRpc, RpcError } from "./rpc.ts";
import type { RunContext } from "./reconcile-context.ts";
import { pushItem } from "./reconcile-report.ts";
import { retryReason, summarizeStripeError } from "./stripe-retry.ts";

interface StaleRecharge {
  recharge_id: string;
  stripe_checkout_session_id: string;
}

interface Resolution {
  outcome: string;
  status: string;
  applied: boolean;
  credited: boolean;
}

function isMissing(err: unknown): boolean {
  return err instanceof Stripe.errors.StripeInvalidRequestError &&
    (err.statusCode === 404 || err.code === "resource_missing");
}

function isKeyRefused(err: unknown): boolean {
  return err instanceof Stripe.errors.StripeAuthenticationError ||
    err instanceof Stripe.errors.StripePermissionError;
}

async function retrieveSession(ctx: RunContext, sessionId: string): Promise<Stripe.Checkout.Session | null> {
  try {
    return await ctx.stripeCall(
      "checkout.sessions.retrieve",
      () => ctx.stripe.checkout.sessions.retrieve(sessionId, { expand: ["payment_intent"] }),
    );
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

function tally(ctx: RunContext, resolution: Resolution): void {
  const counts = ctx.report.pendingRecharges;
  switch (resolution.outcome) {
    case "completed":
      counts.completed++;
      break;
    case "failed":
      counts.failed++;
      break;
    case "expired":
      counts.expired++;
      break;
    case "still_pending":
      counts.stillPending++;
      break;
    case "already_resolved":
      counts.alreadyResolved++;
      break;
    case "session_not_found":
      counts.notFound++;
      break;
  }
  if (resolution.credited) counts.credited++;
}

export async function reconcilePendingRecharges(ctx: RunContext): Promise<void> {
  const counts = ctx.report.pendingRecharges;
  if (ctx.options.maxSessions === 0 || ctx.halted) return;

  let stale: StaleRecharge[];
  try {
    stale = await callRpc<StaleRecharge[]>(ctx.db, "list_stale_pending_recharges", {
      older_than: `${ctx.options.pendingOlderThanSeconds} seconds`,
      max_rows: ctx.options.maxSessions,
    });
  } catch (err) {
    ctx.fail("pendingRecharges.list", err);
    return;
  }
  counts.stale = stale.length;

  for (const row of stale) {
    if (!ctx.hasTime()) {
      ctx.stop("time_budget");
      return;
    }
    const item = { rechargeId: row.recharge_id, sessionId: row.stripe_checkout_session_id };
    let session: Stripe.Checkout.Session | null;
    try {
      session = await retrieveSession(ctx, row.stripe_checkout_session_id);
    } catch (err) {
      counts.errors++;
      ctx.report.ok = false;
      const error = summarizeStripeError(err);
      pushItem(counts, { ...item, outcome: "error", error });
      ctx.log(`reconcile: session ${row.stripe_checkout_session_id}: ${error.type} ${error.code ?? ""}`);
      // Still failing after the retries, or the key is refused: the next sessions would fail
      // the same way.
      if (retryReason(err) !== null || isKeyRefused(err)) {
        ctx.fail("pendingRecharges.retrieve", err);
        return;
      }
      continue;
    }

    try {
      const resolution = await callRpc<Resolution>(ctx.db, "resolve_pending_recharge", {
        recharge_id: row.recharge_id,
        checkout_session: session,
        dry_run: ctx.options.dryRun,
      });
      counts.checked++;
      tally(ctx, resolution);
      pushItem(counts, { ...item, ...resolution });
    } catch (err) {
      counts.errors++;
      ctx.report.ok = false;
      const code = err instanceof RpcError ? err.code : "unknown";
      pushItem(counts, { ...item, outcome: "error", error: { type: "DatabaseError", code } });
      ctx.log(`reconcile: resolving ${row.recharge_id}: ${err instanceof Error ? err.message : String(err)}`);
      // A refusal of this one session (CR003: it contradicts its recharge) spares the others.
      if (!(err instanceof RpcError) || err.status >= 500) {
        ctx.fail("pendingRecharges.resolve", err);
        return;
      }
    }
  }
}
