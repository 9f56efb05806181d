// The JSON a reconciliation run returns and stores: what it found in Stripe and what it did,
// counted separately, so nothing is reported as done that was not. Item lists are capped;
// the counters are always complete.
import type { StripeErrorSummary, StripeRetryRecord } from "./stripe-retry.ts";
import type { ReconcileOptions } from "./reconcile-options.ts";

export const MAX_REPORT_ITEMS = 200;

export type EventPass = "undelivered" | "all";

export interface EventItem {
  id: string;
  type: string;
  created: string;
  pass: EventPass;
  /** The inbox status handle_stripe_event returned, "would_feed" in a dry run, or "error". */
  result: string;
  /** The inbox already had it settled when it was fed (a webhook delivered it meanwhile). */
  duplicate?: boolean;
  errorCode?: string;
}

export interface SessionItem {
  rechargeId: string;
  sessionId: string;
  /** completed | failed | expired | still_pending | already_resolved | session_not_found | error */
  outcome: string;
  status?: string;
  credited?: boolean;
  applied?: boolean;
  error?: StripeErrorSummary | { type: "DatabaseError"; code: string };
}

export type StopReason = "time_budget" | "max_events" | "stripe_unavailable" | "database_error";

export interface ReconcileReport {
  ok: boolean;
  dryRun: boolean;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  watermark: {
    before: string | null;
    /** Where this run looked from and up to (created in [from, to)). */
    from: string;
    to: string;
    /** Every handled event created before this is settled in the inbox. */
    verifiedUpTo: string | null;
    after: string | null;
    advanced: boolean;
  };
  events: {
    /** Distinct events listed from Stripe, per pass. */
    listedUndelivered: number;
    listedAll: number;
    windows: number;
    windowsSplit: number;
    alreadySettled: number;
    fed: number;
    processed: number;
    ignored: number;
    deferred: number;
    failed: number;
    duplicates: number;
    wouldFeed: number;
    errors: number;
    items: EventItem[];
    itemsTruncated: boolean;
  };
  pendingRecharges: {
    stale: number;
    checked: number;
    completed: number;
    failed: number;
    expired: number;
    stillPending: number;
    alreadyResolved: number;
    notFound: number;
    credited: number;
    errors: number;
    items: SessionItem[];
    itemsTruncated: boolean;
  };
  stripe: {
    requests: number;
    retries: number;
    retryLog: StripeRetryRecord[];
  };
  limits: {
    maxEvents: number;
    maxListedEvents: number;
    maxSessions: number;
    timeBudgetMs: number;
    stoppedBy: StopReason | null;
  };
  warnings: string[];
  errors: Array<{ stage: string; error: StripeErrorSummary | { type: "DatabaseError"; code: string } }>;
}

export function emptyReport(options: ReconcileOptions, startedAt: Date): ReconcileReport {
  const iso = startedAt.toISOString();
  return {
    ok: true,
    dryRun: options.dryRun,
    startedAt: iso,
    finishedAt: iso,
    durationMs: 0,
    watermark: { before: null, from: iso, to: iso, verifiedUpTo: null, after: null, advanced: false },
    events: {
      listedUndelivered: 0,
      listedAll: 0,
      windows: 0,
      windowsSplit: 0,
      alreadySettled: 0,
      fed: 0,
      processed: 0,
      ignored: 0,
      deferred: 0,
      failed: 0,
      duplicates: 0,
      wouldFeed: 0,
      errors: 0,
      items: [],
      itemsTruncated: false,
    },
    pendingRecharges: {
      stale: 0,
      checked: 0,
      completed: 0,
      failed: 0,
      expired: 0,
      stillPending: 0,
      alreadyResolved: 0,
      notFound: 0,
      credited: 0,
      errors: 0,
      items: [],
      itemsTruncated: false,
    },
    stripe: { requests: 0, retries: 0, retryLog: [] },
    limits: {
      maxEvents: options.maxEvents,
      maxListedEvents: options.maxListedEvents,
      maxSessions: options.maxSessions,
      timeBudgetMs: options.timeBudgetMs,
      stoppedBy: null,
    },
    warnings: [],
    errors: [],
  };
}

/** Appends to a capped item list, flagging when items were left out. */
export function pushItem<T>(list: { items: T[]; itemsTruncated: boolean }, item: T): void {
  if (list.items.length < MAX_REPORT_ITEMS) list.items.push(item);
  else list.itemsTruncated = true;
}

export const isoFromEpoch = (seconds: number): string => new Date(seconds * 1000).toISOString();
