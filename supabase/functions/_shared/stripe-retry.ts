// Calls to the Stripe API retried with exponential backoff and jitter when Stripe says "try
// again" (429 rate limit, 5xx, lock conflicts, network failures), and only then. Every retry
// is handed to `onRetry`, so a caller can report it: a run that needed ten attempts to get a
// page must say so. Errors are described by Stripe's type, code, status and request id,
// never by their message, which can quote request parameters.
import Stripe from "stripe";

export interface RetryPolicy {
  /** Attempts after the first; 0 disables retrying. */
  maxRetries: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY_POLICY: RetryPolicy = { maxRetries: 4, baseDelayMs: 500, maxDelayMs: 8_000 };

export interface StripeRetryRecord {
  call: string;
  /** The attempt that failed: 1 is the first. */
  attempt: number;
  reason: "rate_limited" | "server_error" | "conflict" | "network";
  statusCode?: number;
  requestId?: string;
  waitMs: number;
}

export interface StripeErrorSummary {
  type: string;
  code?: string;
  statusCode?: number;
  requestId?: string;
  /** Still failing after every retry the policy (or the time budget) allowed. */
  retryable: boolean;
}

export interface StripeCallOptions {
  policy: RetryPolicy;
  /** Epoch ms; no retry waits past it. */
  deadline?: number;
  onAttempt?: (call: string) => void;
  onRetry?: (record: StripeRetryRecord) => void;
  sleep?: (ms: number) => Promise<void>;
  random?: () => number;
}

/** Why an error is worth retrying, or null when retrying cannot help. */
export function retryReason(err: unknown): StripeRetryRecord["reason"] | null {
  if (err instanceof Stripe.errors.StripeConnectionError) return "network";
  if (!(err instanceof Stripe.errors.StripeError)) return null;
  const shouldRetry = err.headers?.["stripe-should-retry"];
  if (shouldRetry === "false") return null;
  const status = err.statusCode ?? 0;
  if (status === 429 || err instanceof Stripe.errors.StripeRateLimitError) return "rate_limited";
  if (status >= 500) return "server_error";
  if (status === 409 || shouldRetry === "true") return "conflict";
  return null;
}

export function summarizeStripeError(err: unknown): StripeErrorSummary {
  if (err instanceof Stripe.errors.StripeError) {
    return {
      type: err.type,
      code: err.code,
      statusCode: err.statusCode,
      requestId: err.requestId,
      retryable: retryReason(err) !== null,
    };
  }
  return { type: "UnexpectedError", retryable: false };
}

/** The wait before retry number `retry` (1-based): exponential, capped, with jitter. */
export function backoffMs(retry: number, policy: RetryPolicy, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  // Half fixed, half random: spreads clients apart without ever retrying at once.
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function callStripe<T>(
  call: string,
  fn: () => Promise<T>,
  options: StripeCallOptions,
): Promise<T> {
  const sleep = options.sleep ?? defaultSleep;
  for (let attempt = 1;; attempt++) {
    options.onAttempt?.(call);
    try {
      return await fn();
    } catch (err) {
      const reason = retryReason(err);
      if (reason === null || attempt > options.policy.maxRetries) throw err;
      const waitMs = backoffMs(attempt, options.policy, options.random);
      if (options.deadline !== undefined && Date.now() + waitMs >= options.deadline) throw err;
      const stripeErr = err instanceof Stripe.errors.StripeError ? err : undefined;
      options.onRetry?.({
        call,
        attempt,
        reason,
        statusCode: stripeErr?.statusCode,
        requestId: stripeErr?.requestId,
        waitMs,
      });
      await sleep(waitMs);
    }
  }
}
