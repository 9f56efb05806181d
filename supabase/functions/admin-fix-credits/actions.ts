// Each action is one call: a repair or diagnosis RPC of the package through supabase-js with
// the service-role key (the RPCs are granted to service_role only), or the reconciliation
// shared with the stripe-reconcile function. Nothing here repairs anything itself: the RPCs
// lock, dry-run, log to credit_private.repair_log and stay exactly-once.
import type { SupabaseClient } from "@supabase/supabase-js";
import { callRpc } from "../_shared/rpc.ts";
import type { ReconcileOptionsInput, ReconcileReport } from "../_shared/reconcile-stripe.ts";
import type { AdminRequest } from "./request.ts";

export interface ActionDeps {
  /** Service-role client. */
  db: SupabaseClient;
  reconcile: (options: ReconcileOptionsInput) => Promise<ReconcileReport>;
}

export interface ActionResult {
  /** Problems found: what was (or, in a dry run, would be) changed, plus what was skipped. */
  found: number;
  /** What was changed; always 0 in a dry run. */
  changed: number;
  /** The RPC's (or the reconciliation's) own report. */
  result: unknown;
  /** The repair's run_id, linking to credit_private.repair_log. */
  runId?: string;
  /** A reconciliation that did not finish: why (the report says where). */
  incomplete?: "stripe_unavailable" | "reconcile_incomplete";
}

interface RepairStep {
  changed: number;
  skipped?: unknown[];
}

interface RepairReport extends RepairStep {
  run_id: string;
  steps?: RepairStep[];
}

interface DiagnosisReport {
  counts: Record<string, number>;
}

function repairResult(report: RepairReport, dryRun: boolean): ActionResult {
  const steps = report.steps ?? [report];
  const wouldChange = steps.reduce((sum, step) => sum + step.changed, 0);
  const skipped = steps.reduce((sum, step) => sum + (step.skipped?.length ?? 0), 0);
  return {
    found: wouldChange + skipped,
    changed: dryRun ? 0 : wouldChange,
    result: report,
    runId: report.run_id,
  };
}

function reconcileResult(report: ReconcileReport): ActionResult {
  const { events, pendingRecharges: pending } = report;
  const found = events.fed + events.wouldFeed + pending.stale;
  const changed = report.dryRun
    ? 0
    : events.fed - events.duplicates - events.errors + pending.completed + pending.failed + pending.expired;
  const incomplete = report.ok
    ? undefined
    : report.limits.stoppedBy === "stripe_unavailable"
    ? "stripe_unavailable"
    : "reconcile_incomplete";
  return { found, changed: Math.max(0, changed), result: report, incomplete };
}

async function repair(
  deps: ActionDeps,
  fn: string,
  target: Record<string, unknown>,
  request: AdminRequest,
  actor: string,
  reason: string,
): Promise<ActionResult> {
  const report = await callRpc<RepairReport>(deps.db, fn, {
    ...target,
    dry_run: request.dryRun,
    actor,
    reason,
  });
  return repairResult(report, request.dryRun);
}

/** Runs one validated request as `actor` (the key's name) for `reason`. RPC errors propagate. */
export async function runAction(
  deps: ActionDeps,
  request: AdminRequest,
  actor: string,
  reason: string,
): Promise<ActionResult> {
  switch (request.action) {
    case "diagnose": {
      const report = await callRpc<DiagnosisReport>(
        deps.db,
        "diagnose_credits",
        request.maxRows === undefined ? {} : { max_rows: request.maxRows },
      );
      const found = Object.values(report.counts).reduce((sum, count) => sum + count, 0);
      return { found, changed: 0, result: report };
    }
    case "fix_all":
      return await repair(deps, "fix_all_credits", {}, request, actor, reason);
    case "fix_orphaned_recharges":
      return await repair(deps, "fix_orphaned_recharges", { recharge_id: null }, request, actor, reason);
    case "fix_specific_recharge":
      return await repair(
        deps,
        "fix_orphaned_recharges",
        { recharge_id: request.rechargeId },
        request,
        actor,
        reason,
      );
    case "recalculate_balance":
      return await repair(
        deps,
        "recompute_credit_balances",
        { user_id: request.userId },
        request,
        actor,
        reason,
      );
    case "recalculate_all_balances":
      return await repair(deps, "recompute_credit_balances", { user_id: null }, request, actor, reason);
    case "retry_failed_webhooks":
      return await repair(
        deps,
        "retry_failed_webhooks",
        { event_id: request.eventId ?? null },
        request,
        actor,
        reason,
      );
    case "reconcile_stripe":
      return reconcileResult(await deps.reconcile({ ...request.options, dryRun: request.dryRun }));
  }
}

/** What a 404 from an action means, by the target it names. */
export function notFoundMessage(request: AdminRequest): string {
  switch (request.action) {
    case "fix_specific_recharge":
      return "unknown recharge: no credit_recharge has this rechargeId";
    case "recalculate_balance":
      return "unknown user: no user and no balance row has this userId";
    case "retry_failed_webhooks":
      return "unknown Stripe event: the inbox holds no event with this eventId";
    default:
      return "not found";
  }
}
