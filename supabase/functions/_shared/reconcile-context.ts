// What one reconciliation run carries through its passes: the clients, the options, the
// report being filled, the time budget, and one wrapper for Stripe calls that retries them
// (stripe-retry.ts) and counts every request and retry in the report.
import type Stripe from "stripe";
import type { SupabaseClient } from "@supabase/supabase-js";
import type { ReconcileOptions } from "./reconcile-options.ts";
import type { ReconcileReport, StopReason } from "./reconcile-report.ts";
import { RpcError } from "./rpc.ts";
import { callStripe, summarizeStripeError } from "./stripe-retry.ts";

export interface ReconcileDeps {
  stripe: Stripe;
  /** A service-role client: the RPCs used are granted to service_role only. */
  db: SupabaseClient;
  log?: (message: string) => void;
  /** Injected by tests; defaults to setTimeout. */
  sleep?: (ms: number) => Promise<void>;
}

export class RunContext {
  readonly deadline: number;
  readonly log: (message: string) => void;
  stoppedBy: StopReason | null = null;

  constructor(
    readonly deps: ReconcileDeps,
    readonly options: ReconcileOptions,
    readonly report: ReconcileReport,
    startedAtMs: number,
  ) {
    this.deadline = startedAtMs + options.timeBudgetMs;
    this.log = deps.log ?? console.error;
  }

  get stripe(): Stripe {
    return this.deps.stripe;
  }

  get db(): SupabaseClient {
    return this.deps.db;
  }

  hasTime(): boolean {
    return Date.now() < this.deadline;
  }

  /** Records why the run stopped early; the first reason wins. */
  stop(reason: StopReason): void {
    this.stoppedBy ??= reason;
    this.report.limits.stoppedBy = this.stoppedBy;
  }

  /** Whether the run may keep calling Stripe and the database at all. */
  get halted(): boolean {
    return this.stoppedBy === "time_budget" || this.stoppedBy === "stripe_unavailable" ||
      this.stoppedBy === "database_error";
  }

  async stripeCall<T>(call: string, fn: () => Promise<T>): Promise<T> {
    return await callStripe(call, fn, {
      policy: this.options.retry,
      deadline: this.deadline,
      sleep: this.deps.sleep,
      onAttempt: () => this.report.stripe.requests++,
      onRetry: (record) => {
        this.report.stripe.retries++;
        this.report.stripe.retryLog.push(record);
        this.log(
          `reconcile: ${call} attempt ${record.attempt} failed (${record.reason}); retrying in ${record.waitMs} ms`,
        );
      },
    });
  }

  /**
   * Records the failure of a whole stage (a listing, a database call) and stops the run:
   * Stripe refused or still failed after the retries, or the database did not answer.
   */
  fail(stage: string, err: unknown): void {
    this.report.ok = false;
    if (err instanceof RpcError) {
      this.log(`reconcile: ${stage}: ${err.message}: ${err.detailForLog}`);
      this.report.errors.push({ stage, error: { type: "DatabaseError", code: err.code } });
      this.stop("database_error");
      return;
    }
    const summary = summarizeStripeError(err);
    const detail = summary.type === "UnexpectedError" && err instanceof Error ? `: ${err.message}` : "";
    this.log(
      `reconcile: ${stage}: ${summary.type} ${summary.code ?? ""} ${summary.statusCode ?? ""}${detail}`,
    );
    this.report.errors.push({ stage, error: summary });
    this.stop("stripe_unavailable");
  }
}
