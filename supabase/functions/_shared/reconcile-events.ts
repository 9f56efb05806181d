// Finds the Stripe events the inbox missed and feeds them through public.handle_stripe_event,
// the webhook's own RPC, so a webhook delivering the same event at the same moment still
// credits once. Two passes over [from, to):
//   1. delivery_success=false: what Stripe itself failed to deliver, fed first;
//   2. every handled event, oldest window first. This pass proves the watermark: it returns
//      the time before which every listed event is settled in the inbox.
// A window holding more than maxListedEvents events is halved until it fits, so the oldest
// events are always reached and processed first within a bounded run.
import type Stripe from "stripe";
import { callRpc, RpcError } from "./rpc.ts";
import type { RunContext } from "./reconcile-context.ts";
import { type EventPass, isoFromEpoch, pushItem } from "./reconcile-report.ts";

/** The event types public.handle_stripe_event applies; Stripe allows 20 per list call. */
export const HANDLED_EVENT_TYPES = [
  "checkout.session.completed",
  "checkout.session.async_payment_succeeded",
  "checkout.session.async_payment_failed",
  "checkout.session.expired",
  "charge.refunded",
  "charge.dispute.created",
  "charge.dispute.closed",
];

/** Inbox statuses after which the reconciliation has nothing left to do for an event. */
const SETTLED = new Set(["processed", "ignored", "deferred"]);
const STATUS_BATCH = 1_000;

interface HandleResult {
  event_id: string;
  status: string;
  duplicate: boolean;
  error_code?: string;
}

interface Listing {
  /** Oldest first. */
  events: Stripe.Event[];
  /** False when the window holds more than the cap and was not listed to the end. */
  complete: boolean;
  /** The time budget ran out before the listing ended. */
  timedOut?: boolean;
}

interface FeedOutcome {
  /** created of the first event left unfed for lack of budget. */
  stoppedAt?: number;
  /** created of the oldest event still not settled after feeding. */
  oldestUnsettled?: number;
}

async function listEvents(
  ctx: RunContext,
  from: number,
  to: number,
  cap: number,
  deliverySuccess?: false,
): Promise<Listing> {
  const byId = new Map<string, Stripe.Event>();
  let startingAfter: string | undefined;
  while (true) {
    if (!ctx.hasTime()) {
      ctx.stop("time_budget");
      return { events: oldestFirst([...byId.values()]), complete: false, timedOut: true };
    }
    const page = await ctx.stripeCall("events.list", () =>
      ctx.stripe.events.list({
        types: HANDLED_EVENT_TYPES,
        created: { gte: from, lt: to },
        limit: ctx.options.pageSize,
        ...(startingAfter === undefined ? {} : { starting_after: startingAfter }),
        ...(deliverySuccess === false ? { delivery_success: false } : {}),
      }));
    for (const event of page.data) byId.set(event.id, event);
    const last = page.data.at(-1);
    if (!page.has_more || last === undefined) break;
    if (byId.size > cap) return { events: oldestFirst([...byId.values()]), complete: false };
    startingAfter = last.id;
  }
  return { events: oldestFirst([...byId.values()]), complete: true };
}

/** Stripe lists newest first; ties keep Stripe's order reversed. */
function oldestFirst(events: Stripe.Event[]): Stripe.Event[] {
  return events.reverse().sort((a, b) => a.created - b.created);
}

async function inboxStatuses(ctx: RunContext, ids: string[]): Promise<Record<string, string>> {
  const statuses: Record<string, string> = {};
  for (let i = 0; i < ids.length; i += STATUS_BATCH) {
    const batch = ids.slice(i, i + STATUS_BATCH);
    Object.assign(
      statuses,
      await callRpc<Record<string, string>>(ctx.db, "get_stripe_event_statuses", { event_ids: batch }),
    );
  }
  return statuses;
}

/**
 * One event through public.handle_stripe_event. A refusal of this event alone (a 4xx) is
 * counted and the run goes on; the database failing (5xx, unreachable) stops the run.
 */
async function feedOne(ctx: RunContext, event: Stripe.Event): Promise<HandleResult | null> {
  try {
    return await callRpc<HandleResult>(ctx.db, "handle_stripe_event", { event });
  } catch (err) {
    if (!(err instanceof RpcError) || err.status >= 500) throw err;
    ctx.report.events.errors++;
    ctx.report.ok = false;
    ctx.log(`reconcile: event ${event.id} refused: ${err.code} ${err.detailForLog}`);
    return null;
  }
}

/**
 * Feeds the unsettled events of a listing, oldest first, within the run's budget. `seen`
 * holds the outcome of every event already looked at in this run (both passes).
 */
async function feedUnsettled(
  ctx: RunContext,
  events: Stripe.Event[],
  pass: EventPass,
  seen: Map<string, string>,
): Promise<FeedOutcome> {
  const report = ctx.report.events;
  const outcome: FeedOutcome = {};
  const unsettled = (created: number) => {
    outcome.oldestUnsettled = Math.min(outcome.oldestUnsettled ?? created, created);
  };
  const statuses = await inboxStatuses(ctx, events.filter((e) => !seen.has(e.id)).map((e) => e.id));

  for (const event of events) {
    const earlier = seen.get(event.id);
    if (earlier !== undefined) {
      // Looked at in the first pass: its outcome stands and is counted once.
      if (!SETTLED.has(earlier)) unsettled(event.created);
      continue;
    }
    const status = statuses[event.id];
    if (status !== undefined && SETTLED.has(status)) {
      seen.set(event.id, status);
      report.alreadySettled++;
      continue;
    }
    const item = { id: event.id, type: event.type, created: isoFromEpoch(event.created), pass };
    if (ctx.options.dryRun) {
      seen.set(event.id, "would_feed");
      report.wouldFeed++;
      pushItem(report, { ...item, result: "would_feed" });
      unsettled(event.created);
      continue;
    }
    if (report.fed >= ctx.options.maxEvents || !ctx.hasTime()) {
      ctx.stop(report.fed >= ctx.options.maxEvents ? "max_events" : "time_budget");
      outcome.stoppedAt = event.created;
      break;
    }

    report.fed++;
    const result = await feedOne(ctx, event);
    if (result === null) {
      seen.set(event.id, "error");
      unsettled(event.created);
      pushItem(report, { ...item, result: "error" });
      continue;
    }
    seen.set(event.id, result.status);
    if (result.duplicate) report.duplicates++;
    if (result.status === "processed") report.processed++;
    else if (result.status === "ignored") report.ignored++;
    else if (result.status === "deferred") report.deferred++;
    else report.failed++;
    if (!SETTLED.has(result.status)) {
      unsettled(event.created);
      ctx.log(`reconcile: event ${event.id} (${event.type}) is ${result.status}: ${result.error_code ?? ""}`);
    }
    pushItem(report, {
      ...item,
      result: result.status,
      duplicate: result.duplicate,
      ...(result.error_code ? { errorCode: result.error_code } : {}),
    });
  }
  return outcome;
}

/** Pass 1: events Stripe could not deliver. Feeds them; proves nothing about the watermark. */
async function feedUndelivered(ctx: RunContext, from: number, to: number, seen: Map<string, string>) {
  const listing = await listEvents(ctx, from, to, ctx.options.maxListedEvents, false);
  ctx.report.events.listedUndelivered = listing.events.length;
  await feedUnsettled(ctx, listing.events, "undelivered", seen);
}

/**
 * Pass 2: every handled event, window by window. `progress.verified` is the watermark proven
 * so far; it stays valid if a later window throws.
 */
async function feedAll(
  ctx: RunContext,
  from: number,
  to: number,
  seen: Map<string, string>,
  progress: { verified: number },
): Promise<void> {
  const report = ctx.report.events;
  let held = false;
  let low = from;
  while (low < to && !ctx.halted) {
    let high = to;
    let listing = await listEvents(ctx, low, high, ctx.options.maxListedEvents);
    while (!listing.complete && !listing.timedOut && high - low > 1) {
      report.windowsSplit++;
      high = low + Math.max(1, Math.floor((high - low) / 2));
      // A one-second window cannot be split further: it is listed whole.
      listing = await listEvents(ctx, low, high, high - low > 1 ? ctx.options.maxListedEvents : Infinity);
    }
    if (listing.timedOut) return;
    report.windows++;
    report.listedAll += listing.events.length;

    const outcome = await feedUnsettled(ctx, listing.events, "all", seen);
    const windowVerified = Math.min(outcome.stoppedAt ?? high, outcome.oldestUnsettled ?? high);
    // Past an unsettled event the watermark may not move, even if later windows are clean.
    if (!held) progress.verified = windowVerified;
    if (windowVerified < high) held = true;
    if (outcome.stoppedAt !== undefined) return;
    low = high;
  }
}

/**
 * Runs both passes over events created in [from, to) (epoch seconds) and returns the time
 * before which every handled event is verified settled (from itself when nothing is).
 */
export async function reconcileEvents(ctx: RunContext, from: number, to: number): Promise<number> {
  const progress = { verified: from };
  if (from >= to) return from;
  const seen = new Map<string, string>();
  try {
    await feedUndelivered(ctx, from, to, seen);
    if (!ctx.halted) await feedAll(ctx, from, to, seen, progress);
  } catch (err) {
    ctx.report.events.errors++;
    ctx.fail("events", err);
  }
  return progress.verified;
}
