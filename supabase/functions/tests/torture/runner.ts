// The torture run: executes the generator's batches against the stack (operations of a batch
// concurrently, faults in the middle), checks every answer against the reference model, and
// checks the database against the model and DESIGN.md's invariants after every batch and, in
// full (totals, inbox, diagnosis), at checkpoints and at the end.
import postgres from "postgres";
import type { SupabaseClient } from "@supabase/supabase-js";
import { stack } from "../_helpers/env.ts";
import { invariantViolations } from "../_helpers/db.ts";
import {
  checkoutEvent,
  disputeEvent,
  fixture,
  refundEvent,
  type StripeEvent,
} from "../_helpers/stripe-events.ts";
import { deliver, deliverAndHangUp, type Outcome, rpc, rpcAndHangUp, serviceClient } from "./client.ts";
import { Faults, type PgControl, retryDb } from "./faults.ts";
import {
  Generator,
  type PlannedBatch,
  type PlannedOp,
  type StripeEventPlan,
  type StripePurchase,
} from "./generator.ts";
import {
  Catalog,
  type CheckedOp,
  describeExpectation,
  emptyUserState,
  linearize,
  settled,
  type SpendRecord,
  type SpendReply,
  step,
  type UserState,
} from "./model.ts";

export interface TortureOptions {
  seed: number;
  ops: number;
  users: number;
  checkpointEvery: number;
  adminDbUrl: string;
  pg: PgControl | null;
  /** schema.name of the monitor-run function, "" to look it up, "none" to leave monitor runs out. */
  monitorFunction: string;
  /** The stack is restarted by a supervisor when its process dies (torture.sh does). */
  gatewaySupervised: boolean;
  /** Where the supervisor keeps the stack's pid, to restart a wedged stack. */
  stackPidFile: string | null;
  log: (line: string) => void;
}

/** The run diverged from the model: what the checker reports, with the first operation concerned. */
export class Divergence extends Error {
  constructor(
    readonly op: number,
    readonly batch: number,
    readonly detail: string,
  ) {
    super(`op #${op} (batch ${batch}): ${detail}`);
  }
}

/** Invariants of DESIGN.md checked per user (see invariantViolations) plus the model comparison. */
const INVARIANTS_PER_USER = 5;

export interface Summary {
  seed: number;
  ops: number;
  batches: number;
  users: number;
  duration_seconds: number;
  monitor_function: string | null;
  gateway_supervised: boolean;
  operations: Record<string, number>;
  stripe: { purchases: Record<string, number>; events: Record<string, number> };
  deliveries: Record<string, number>;
  spends: Record<string, number>;
  faults: Record<string, number>;
  checks: Record<string, number>;
  totals: Record<string, number>;
  result: "ok" | "diverged";
}

type Attempt =
  | { kind: "delivery"; op: PlannedOp; eventId: string; outcome: Outcome; hungUp: boolean }
  | {
    kind: "spend";
    op: PlannedOp;
    user: number;
    key: string;
    amount: number;
    outcome: Outcome;
    hungUp: boolean;
  }
  | { kind: "record_pending"; op: PlannedOp; purchase: number; outcome: Outcome }
  | { kind: "repair"; op: PlannedOp; outcome: Outcome }
  | { kind: "monitor"; op: PlannedOp; outcome: Outcome };

function increment(counter: Record<string, number>, key: string, by = 1): void {
  counter[key] = (counter[key] ?? 0) + by;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function describeOutcome(outcome: Outcome): string {
  if (!outcome.answered) return `no answer (${outcome.reason})`;
  return `${outcome.status} ${JSON.stringify(outcome.body)?.slice(0, 300)}`;
}

export class Torture {
  private readonly catalog = new Catalog();
  private readonly generator: Generator;
  private readonly runTag = crypto.randomUUID().slice(0, 8);
  private readonly sql: postgres.Sql;
  private readonly faults: Faults;
  private readonly db: SupabaseClient;
  private userIds: string[] = [];
  private states: UserState[] = [];
  private readonly payloads = new Map<string, string>();
  private readonly history = new Map<number, string[]>();
  private installationBaseline = new Set<string>();
  private monitor: string | null = null;
  private readonly started = performance.now();
  private batches = 0;

  readonly counters = {
    operations: {} as Record<string, number>,
    deliveries: {} as Record<string, number>,
    spends: {} as Record<string, number>,
    faults: { client_disconnect: 0, backend_kill: 0, backends_killed: 0, pg_restart: 0 } as Record<
      string,
      number
    >,
    checks: {
      invariant_checks_passed: 0,
      batch_checks_passed: 0,
      model_comparisons_passed: 0,
      checkpoints_passed: 0,
      diagnosis_checks_passed: 0,
    } as Record<string, number>,
  };

  constructor(private readonly options: TortureOptions) {
    this.generator = new Generator({
      seed: options.seed,
      ops: options.ops,
      users: options.users,
      runTag: this.runTag,
    });
    this.sql = postgres(stack.dbUrl, {
      max: 4,
      onnotice: () => {},
      connection: { application_name: "torture-checker" },
    });
    this.faults = new Faults(options.adminDbUrl, options.pg);
    this.db = serviceClient();
  }

  async close(): Promise<void> {
    await this.sql.end({ timeout: 5 });
    await this.faults.close();
  }

  // -------------------------------------------------------------------------------------
  // Setup
  // -------------------------------------------------------------------------------------

  async setup(): Promise<void> {
    const rows = await this.sql`
      insert into auth.users (email)
      select 'torture-' || ${this.runTag} || '-' || n || '@test.local' from generate_series(1, ${this.options.users}) n
      returning id`;
    this.userIds = rows.map((row) => row.id as string);
    this.states = this.userIds.map(() => emptyUserState());
    this.monitor = await this.findMonitor();
    const report = await this.diagnose();
    this.installationBaseline = new Set(this.installationFindings(report));
    this.options.log(
      `torture: seed ${this.options.seed}, ${this.options.ops} ops, ${this.options.users} users, run ${this.runTag}; ` +
        `monitor runs: ${this.monitor ?? "none (no monitor-run function installed: repairs instead)"}; ` +
        `PostgreSQL restarts: ${this.options.pg ? "on" : "off (TORTURE_PG_DATA unset)"}`,
    );
  }

  /** The monitor-run function of the monitoring issue, if it is installed: looked up by name. */
  private async findMonitor(): Promise<string | null> {
    const wanted = this.options.monitorFunction;
    if (wanted === "none") return null;
    // A boolean parameter named like "force" is passed true: the torture run calls the
    // monitor on purpose, even where its schedule is paused (npm test pauses it).
    const rows = await this.sql`
      select format('%I.%I', n.nspname, p.proname) || '(' || coalesce((
          select string_agg(format('%I => true', a.name), ', ')
          from unnest(p.proargnames, p.proargtypes::oid[]) as a(name, type)
          where a.type = 'pg_catalog.bool'::pg_catalog.regtype and a.name ~ 'force'
        ), '') || ')' as call
      from pg_catalog.pg_proc p
      join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where n.nspname in ('public', 'credit_private') and p.prokind = 'f'
        and p.pronargs = p.pronargdefaults
        and p.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype
        and (case when ${wanted} <> '' then format('%I.%I', n.nspname, p.proname) = ${wanted}
             else p.proname ~ '^(run_([a-z_]*_)?monitor|([a-z_]*_)?monitor_run|monitor)$' end)
      order by (p.proname ~ '^run_') desc, (n.nspname = 'credit_private') desc, p.proname
      limit 1`;
    if (rows.length === 0 && wanted !== "") throw new Error(`monitor function ${wanted} not found`);
    return rows.length > 0 ? rows[0].call as string : null;
  }

  // -------------------------------------------------------------------------------------
  // Stripe events
  // -------------------------------------------------------------------------------------

  private purchase(index: number): StripePurchase {
    return this.generator.purchases[index];
  }

  /** Registers new purchases and events with the model and builds their payloads (once). */
  private syncCatalog(): void {
    const { purchases, events } = this.generator;
    for (let i = this.catalog.purchases.length; i < purchases.length; i++) {
      this.catalog.addPurchase(purchases[i]);
    }
    for (let i = this.catalog.events.size; i < events.length; i++) {
      this.catalog.addEvent(events[i]);
      this.payloads.set(events[i].id, JSON.stringify(this.buildEvent(events[i])));
    }
  }

  private buildEvent(plan: StripeEventPlan): StripeEvent {
    const userId = this.userIds[plan.user];
    let event: StripeEvent;
    if (plan.kind === "other") {
      event = fixture("customer.created");
    } else {
      const p = this.purchase(plan.purchase);
      const session = {
        userId,
        credits: p.credits,
        amountCents: p.amountCents,
        sessionId: p.sessionId,
        paymentIntentId: p.paymentIntentId,
      };
      switch (plan.kind) {
        case "completed_paid":
          event = checkoutEvent("checkout.session.completed", { ...session, paymentStatus: "paid" });
          break;
        case "completed_unpaid":
          event = checkoutEvent("checkout.session.completed", { ...session, paymentStatus: "unpaid" });
          break;
        case "async_succeeded":
          event = checkoutEvent("checkout.session.async_payment_succeeded", {
            ...session,
            paymentStatus: "paid",
          });
          break;
        case "async_failed":
          event = checkoutEvent("checkout.session.async_payment_failed", {
            ...session,
            paymentStatus: "unpaid",
          });
          break;
        case "expired":
          event = checkoutEvent("checkout.session.expired", { ...session, paymentStatus: "unpaid" });
          break;
        case "refund":
          event = refundEvent(p.paymentIntentId, p.amountCents, plan.refundedCents ?? 0, p.chargeId);
          break;
        case "dispute_created":
          event = disputeEvent(
            "charge.dispute.created",
            p.paymentIntentId,
            plan.disputeAmount ?? 0,
            "needs_response",
            p.dispute?.id ?? "",
          );
          break;
        case "dispute_closed":
          event = disputeEvent(
            "charge.dispute.closed",
            p.paymentIntentId,
            plan.disputeAmount ?? 0,
            plan.disputeOutcome ?? "lost",
            p.dispute?.id ?? "",
          );
          break;
      }
      if (plan.kind.startsWith("completed") || plan.kind.startsWith("async") || plan.kind === "expired") {
        event.data.object.currency = "usd";
      }
    }
    event.id = plan.id;
    event.created = plan.created;
    return event;
  }

  private payload(eventId: string): string {
    const payload = this.payloads.get(eventId);
    if (payload === undefined) throw new Error(`no payload for ${eventId}`);
    return payload;
  }

  // -------------------------------------------------------------------------------------
  // Executing a batch
  // -------------------------------------------------------------------------------------

  private async deliverOnce(
    eventId: string,
    hangUpAfterMs?: number,
  ): Promise<Attempt & { kind: "delivery" }> {
    increment(this.counters.deliveries, "attempts");
    const op = { kind: "deliver", index: 0, eventId, redelivery: true } as PlannedOp;
    if (hangUpAfterMs !== undefined) {
      this.counters.faults.client_disconnect++;
      const outcome = await deliverAndHangUp(this.payload(eventId), hangUpAfterMs);
      return { kind: "delivery", op, eventId, outcome, hungUp: true };
    }
    return { kind: "delivery", op, eventId, outcome: await deliver(this.payload(eventId)), hungUp: false };
  }

  private async spendOnce(
    user: number,
    key: string,
    amount: number,
    hangUpAfterMs?: number,
  ): Promise<{ outcome: Outcome; hungUp: boolean }> {
    increment(this.counters.spends, "attempts");
    const args = { user_id: this.userIds[user], amount, idempotency_key: key, description: "torture" };
    if (hangUpAfterMs !== undefined) {
      this.counters.faults.client_disconnect++;
      return { outcome: await rpcAndHangUp("spend_credits", args, hangUpAfterMs), hungUp: true };
    }
    return { outcome: await rpc(this.db, "spend_credits", args), hungUp: false };
  }

  private async execute(op: PlannedOp): Promise<Attempt[]> {
    switch (op.kind) {
      case "deliver": {
        increment(this.counters.operations, op.redelivery ? "redeliveries" : "deliveries");
        const attempt = await this.deliverOnce(op.eventId, op.disconnectAfterMs);
        return [{ ...attempt, op }];
      }
      case "burst": {
        increment(this.counters.operations, "concurrent_bursts");
        increment(this.counters.deliveries, "concurrent_copies", op.copies);
        const attempts = await Promise.all(
          Array.from({ length: op.copies }, () => this.deliverOnce(op.eventId)),
        );
        return attempts.map((attempt) => ({ ...attempt, op }));
      }
      case "related": {
        increment(this.counters.operations, "related_deliveries");
        const attempts = await Promise.all(op.eventIds.map((eventId) => this.deliverOnce(eventId)));
        return attempts.map((attempt) => ({ ...attempt, op }));
      }
      case "spend": {
        increment(this.counters.operations, "spends");
        if (op.copies > 1) increment(this.counters.spends, "concurrent_copies", op.copies);
        const results = await Promise.all(
          Array.from(
            { length: op.copies },
            (_, i) => this.spendOnce(op.user, op.key, op.amount, i === 0 ? op.disconnectAfterMs : undefined),
          ),
        );
        return results.map(({ outcome, hungUp }) => ({
          kind: "spend" as const,
          op,
          user: op.user,
          key: op.key,
          amount: op.amount,
          outcome,
          hungUp,
        }));
      }
      case "record_pending": {
        increment(this.counters.operations, "record_pending");
        const p = this.purchase(op.purchase);
        const outcome = await rpc(this.db, "record_pending_recharge", {
          user_id: this.userIds[p.user],
          checkout_session_id: p.sessionId,
          credits: p.credits,
          amount_cents: p.amountCents,
          currency: "usd",
        });
        return [{ kind: "record_pending", op, purchase: op.purchase, outcome }];
      }
      case "repair":
      case "monitor": {
        if (op.kind === "monitor" && this.monitor) {
          increment(this.counters.operations, "monitor_runs");
          return [{ kind: "monitor", op, outcome: await this.runMonitor() }];
        }
        increment(this.counters.operations, "repairs");
        const outcome = await rpc(this.db, "fix_all_credits", {
          dry_run: false,
          actor: "torture",
          reason: `torture seed ${this.options.seed} op ${op.index}`,
        });
        return [{ kind: "repair", op, outcome }];
      }
    }
  }

  /** A monitor run as pg_cron makes it: the function called as postgres. */
  private async runMonitor(): Promise<Outcome> {
    try {
      const rows = await this.sql.unsafe(`select (${this.monitor})::text as result`);
      const text = rows[0]?.result as string | null;
      let body: unknown = text;
      try {
        body = text === null ? null : JSON.parse(text);
      } catch {
        // Not JSON: kept as text.
      }
      return { answered: true, status: 200, body };
    } catch (err) {
      if (err instanceof postgres.PostgresError) {
        return { answered: true, status: 500, body: { code: err.code, message: err.message } };
      }
      return { answered: false, reason: err instanceof Error ? err.message : String(err) };
    }
  }

  private async injectFault(batch: PlannedBatch): Promise<void> {
    const fault = batch.fault;
    if (!fault) return;
    await new Promise((resolve) => setTimeout(resolve, fault.delayMs));
    if (fault.kind === "backend_kill") {
      this.counters.faults.backend_kill++;
      this.counters.faults.backends_killed += await this.faults.killGatewayBackends();
    } else if (this.options.pg) {
      this.counters.faults.pg_restart++;
      await this.faults.stopImmediate();
      await new Promise((resolve) => setTimeout(resolve, fault.downMs));
    }
  }

  async runBatch(batch: PlannedBatch, final = false): Promise<void> {
    this.batches++;
    this.syncCatalog();
    const faultWindow = batch.fault !== undefined &&
      (batch.fault.kind !== "pg_restart" || this.options.pg !== null);
    const [attemptLists] = await Promise.all([
      Promise.all(batch.ops.map((op) => this.execute(op))),
      this.injectFault(batch),
    ]);
    const attempts = attemptLists.flat();
    if (batch.fault?.kind === "pg_restart" && this.options.pg) {
      await this.faults.start();
    }
    if (faultWindow) await this.awaitGateway(batch);
    await this.check(batch, attempts, faultWindow, final);
  }

  /**
   * After a fault the gateway must answer again. If its process died (it refused
   * connections), that is a crash of the local stack, not a fault we injected: with a
   * supervisor (torture.sh restarts the stack) it is counted and the run goes on; without one
   * (npm test) the run stops and says so.
   */
  private async awaitGateway(batch: PlannedBatch): Promise<void> {
    const supervised = this.options.gatewaySupervised;
    let { ready, refused } = await this.faults.waitForGateway(supervised ? 60_000 : 180_000, !supervised);
    if (!ready && !refused && supervised && this.options.stackPidFile) {
      // Alive but wedged (its pool times out on every request): restarted like a crashed one.
      this.counters.faults.gateway_wedged = (this.counters.faults.gateway_wedged ?? 0) + 1;
      this.options.log(
        `  gateway wedged after the ${batch.fault?.kind} fault of batch ${batch.index}: restarting it`,
      );
      await this.faults.stopStack(this.options.stackPidFile);
      ({ ready, refused } = await this.faults.waitForGateway(180_000, false));
      refused = false;
    }
    if (refused) this.counters.faults.gateway_crashes = (this.counters.faults.gateway_crashes ?? 0) + 1;
    if (ready && (!refused || supervised)) return;
    this.diverge(
      batch,
      batch.ops[0].index,
      refused
        ? `the local gateway process died during the ${batch.fault?.kind} fault and did not come back: ` +
          "see the stack log (a postgres.js crash when its connections are closed under it, " +
          "TypeError: Cannot read properties of null (reading 'write') at nextWrite, would be this)"
        : `the gateway did not answer RPCs again after the ${batch.fault?.kind} fault; ` +
          `the database meanwhile: ${await this.faults.databaseState()}`,
    );
  }

  // -------------------------------------------------------------------------------------
  // Checking a batch
  // -------------------------------------------------------------------------------------

  private note(user: number, line: string): void {
    const lines = this.history.get(user) ?? [];
    lines.push(line);
    if (lines.length > 12) lines.shift();
    this.history.set(user, lines);
  }

  private diverge(batch: PlannedBatch, op: number, detail: string, user?: number): never {
    const history = user === undefined
      ? ""
      : `\n  recent operations of user ${user} (${this.userIds[user]}), oldest first:\n    ${
        (this.history.get(user) ?? []).join("\n    ")
      }`;
    throw new Divergence(op, batch.index, detail + history);
  }

  /** A 2xx webhook answer as the model sees it, or null when the body is not one. */
  private deliveryReply(body: unknown): { status: string; duplicate: boolean } | null {
    if (!isRecord(body) || typeof body.status !== "string" || typeof body.duplicate !== "boolean") {
      return null;
    }
    return { status: body.status, duplicate: body.duplicate };
  }

  private spendReply(outcome: Outcome & { answered: true }): SpendReply | null {
    const body = outcome.body;
    if (outcome.status === 200 && isRecord(body) && typeof body.balance_after === "number") {
      return {
        kind: "ok",
        balanceAfter: body.balance_after,
        replayed: body.replayed === true,
        transactionId: String(body.transaction_id),
      };
    }
    if (outcome.status === 400 && isRecord(body) && (body.code === "CR001" || body.code === "CR002")) {
      return { kind: "refused", code: body.code };
    }
    return null;
  }

  private async check(
    batch: PlannedBatch,
    attempts: Attempt[],
    faultWindow: boolean,
    final: boolean,
  ): Promise<void> {
    const perUser = new Map<number, CheckedOp[]>();
    const add = (user: number, op: CheckedOp) => {
      const list = perUser.get(user) ?? [];
      list.push(op);
      perUser.set(user, list);
    };
    const doubtfulDeliveries = new Map<string, number>(); // event -> op index
    const doubtfulSpends: Array<{ user: number; key: string; amount: number; op: number }> = [];
    const doubtfulPending: Array<{ purchase: number; op: number }> = [];
    let touchesAll = faultWindow;

    for (const attempt of attempts) {
      const opIndex = attempt.op.index;
      const lost = !attempt.outcome.answered || attempt.outcome.status >= 500;
      const mayBeLost = faultWindow || ("hungUp" in attempt && attempt.hungUp);
      if (lost && !mayBeLost) {
        this.diverge(
          batch,
          opIndex,
          `${attempt.kind} ${this.describeAttempt(attempt)} answered ${
            describeOutcome(attempt.outcome)
          } outside any fault: allowed is a 2xx (or for a spend, CR001/CR002)`,
          "user" in attempt ? attempt.user : undefined,
        );
      }
      switch (attempt.kind) {
        case "delivery": {
          const user = this.catalog.event(attempt.eventId).user;
          if (lost) {
            increment(this.counters.deliveries, "unanswered_or_5xx");
            if (!doubtfulDeliveries.has(attempt.eventId)) doubtfulDeliveries.set(attempt.eventId, opIndex);
            break;
          }
          const outcome = attempt.outcome as Outcome & { answered: true };
          const reply = outcome.status === 200 ? this.deliveryReply(outcome.body) : null;
          if (!reply) {
            this.diverge(
              batch,
              opIndex,
              `delivery of ${attempt.eventId} answered ${
                describeOutcome(outcome)
              }: allowed is 200 {received, status, duplicate}, or 500 / no answer during a fault`,
              user,
            );
          }
          increment(this.counters.deliveries, "answered_2xx");
          if (reply.duplicate) increment(this.counters.deliveries, "answered_duplicate");
          add(user, { kind: "delivery", op: opIndex, eventId: attempt.eventId, reply });
          break;
        }
        case "spend": {
          if (lost) {
            increment(this.counters.spends, "unanswered_or_5xx");
            if (!doubtfulSpends.some((s) => s.key === attempt.key && s.amount === attempt.amount)) {
              doubtfulSpends.push({
                user: attempt.user,
                key: attempt.key,
                amount: attempt.amount,
                op: opIndex,
              });
            }
            break;
          }
          const reply = this.spendReply(attempt.outcome as Outcome & { answered: true });
          if (!reply) {
            this.diverge(
              batch,
              opIndex,
              `spend ${attempt.key} of ${attempt.amount} answered ${
                describeOutcome(attempt.outcome)
              }: allowed is 200 {balance_after, replayed}, 400 CR001 or CR002`,
              attempt.user,
            );
          }
          add(attempt.user, { kind: "spend", op: opIndex, key: attempt.key, amount: attempt.amount, reply });
          break;
        }
        case "record_pending": {
          const user = this.purchase(attempt.purchase).user;
          if (lost) {
            doubtfulPending.push({ purchase: attempt.purchase, op: opIndex });
            break;
          }
          const outcome = attempt.outcome as Outcome & { answered: true };
          const body = outcome.body;
          if (outcome.status !== 200 || !isRecord(body) || typeof body.created !== "boolean") {
            this.diverge(
              batch,
              opIndex,
              `record_pending_recharge answered ${describeOutcome(outcome)}`,
              user,
            );
          }
          add(user, {
            kind: "record_pending",
            op: opIndex,
            purchase: attempt.purchase,
            reply: { created: body.created, status: String(body.status) },
          });
          break;
        }
        case "repair":
        case "monitor":
          touchesAll = true;
          if (!lost) this.checkRepair(batch, attempt);
          break;
      }
    }

    const inDoubt = doubtfulDeliveries.size + doubtfulSpends.length + doubtfulPending.length;
    if (inDoubt > 0 || faultWindow) await this.faults.quiesce();

    // What the unanswered requests did, looked up now that nothing runs any more.
    const landed = new Set<string>();
    if (doubtfulDeliveries.size > 0) {
      const rows = await retryDb(() =>
        this.sql`select event_id from credit_private.stripe_webhook_event where event_id = any(${[
          ...doubtfulDeliveries.keys(),
        ]})`
      );
      for (const row of rows) landed.add(row.event_id as string);
    }
    const spendRows = new Map<string, SpendRecord>();
    if (doubtfulSpends.length > 0) {
      const rows = await retryDb(() =>
        this.sql`select idempotency_key, -amount as amount, balance_after, id from public.credit_transaction
          where idempotency_key = any(${doubtfulSpends.map((s) => `spend:${s.key}`)})`
      );
      for (const row of rows) {
        spendRows.set(String(row.idempotency_key).slice("spend:".length), {
          amount: Number(row.amount),
          balanceAfter: Number(row.balance_after),
          transactionId: String(row.id),
        });
      }
    }
    for (const [eventId, op] of doubtfulDeliveries) {
      const user = this.catalog.event(eventId).user;
      if (landed.has(eventId)) {
        increment(this.counters.deliveries, "in_doubt_landed");
        add(user, { kind: "delivery_landed", op, eventId });
      } else {
        increment(this.counters.deliveries, "in_doubt_not_landed");
      }
    }
    for (const spend of doubtfulSpends) {
      const row = spendRows.get(spend.key) ?? null;
      increment(this.counters.spends, row ? "in_doubt_key_found" : "in_doubt_key_absent");
      add(spend.user, {
        kind: "spend_in_doubt",
        op: spend.op,
        key: spend.key,
        amount: spend.amount,
        dbRow: row,
      });
    }

    // Linearize each user's operations of this batch.
    const candidates = new Map<number, UserState[]>();
    for (const [user, ops] of perUser) {
      const start = this.states[user];
      let states = linearize(this.catalog, user, start, ops);
      // An unanswered spend did exactly what the ledger shows under its key.
      for (const op of ops) {
        if (op.kind !== "spend_in_doubt") continue;
        states = states.filter((state) =>
          op.dbRow
            ? state.spends.get(op.key)?.transactionId === op.dbRow.transactionId
            : !state.spends.has(op.key)
        );
      }
      if (states.length === 0) this.explainNoOrder(batch, user, start, ops);
      candidates.set(user, states);
      for (const op of ops) {
        this.note(user, this.describeChecked(op));
        this.countOps(op);
      }
    }

    // Unanswered pending recharges: what the database holds now.
    if (doubtfulPending.length > 0) {
      const sessions = doubtfulPending.map((d) => this.purchase(d.purchase).sessionId);
      const rows = await retryDb(() =>
        this.sql`select stripe_checkout_session_id from public.credit_recharge
          where stripe_checkout_session_id = any(${sessions})`
      );
      const existing = new Set(rows.map((row) => row.stripe_checkout_session_id as string));
      for (const doubt of doubtfulPending) {
        const p = this.purchase(doubt.purchase);
        if (!existing.has(p.sessionId)) continue;
        const states = candidates.get(p.user) ?? [this.states[p.user]];
        candidates.set(
          p.user,
          states.map((state) => ({
            ...state,
            pendingRecorded: new Set([...state.pendingRecorded, p.index]),
          })),
        );
      }
    }

    // Stripe retries every delivery it got no 2xx for; a backend retries an unanswered spend.
    for (const [eventId, op] of doubtfulDeliveries) {
      if (landed.has(eventId)) continue;
      await this.retryUntilAnswered(batch, op, eventId, candidates);
    }
    for (const spend of doubtfulSpends) {
      await this.retrySpend(batch, spend, candidates, spendRows.has(spend.key));
    }

    // The database must be in one of the states the model allows.
    const users = touchesAll || final ? this.userIds.map((_, i) => i) : [...new Set([...candidates.keys()])];
    await this.compareWithDatabase(batch, users, candidates, attempts);
    this.counters.checks.batch_checks_passed++;
  }

  private describeAttempt(attempt: Attempt): string {
    switch (attempt.kind) {
      case "delivery":
        return `of ${attempt.eventId} (${this.catalog.event(attempt.eventId).kind})`;
      case "spend":
        return `${attempt.key} of ${attempt.amount}`;
      case "record_pending":
        return `of purchase ${attempt.purchase}`;
      default:
        return "";
    }
  }

  private describeChecked(op: CheckedOp): string {
    switch (op.kind) {
      case "delivery": {
        const event = this.catalog.event(op.eventId);
        return `#${op.op} delivery ${op.eventId} (${event.kind}, purchase ${event.purchase}) -> ${
          JSON.stringify(op.reply)
        }`;
      }
      case "delivery_landed":
        return `#${op.op} delivery ${op.eventId} unanswered, found in the inbox`;
      case "spend":
        return `#${op.op} spend ${op.key} of ${op.amount} -> ${JSON.stringify(op.reply)}`;
      case "spend_in_doubt":
        return `#${op.op} spend ${op.key} of ${op.amount} unanswered, ledger row ${JSON.stringify(op.dbRow)}`;
      case "record_pending":
        return `#${op.op} record_pending purchase ${op.purchase} -> ${JSON.stringify(op.reply)}`;
    }
  }

  private explainNoOrder(batch: PlannedBatch, user: number, start: UserState, ops: CheckedOp[]): never {
    const { balance } = this.catalog.balances(user, start);
    const lines = ops.map((op) =>
      `${this.describeChecked(op)}; from the state before the batch the model allows ${
        describeExpectation(this.catalog, user, start, op)
      }`
    );
    const first = Math.min(...ops.map((op) => op.op));
    this.diverge(
      batch,
      first,
      `no order of user ${user}'s concurrent operations explains their answers (balance before: ${balance}):\n    ${
        lines.join("\n    ")
      }`,
      user,
    );
  }

  /** Stripe's retry of a delivery that got no 2xx: until it does. */
  private async retryUntilAnswered(
    batch: PlannedBatch,
    op: number,
    eventId: string,
    candidates: Map<number, UserState[]>,
  ): Promise<void> {
    const user = this.catalog.event(eventId).user;
    for (let attempt = 1; attempt <= 20; attempt++) {
      increment(this.counters.deliveries, "stripe_retries");
      const { outcome } = await this.deliverOnce(eventId);
      if (outcome.answered && outcome.status === 200) {
        const reply = this.deliveryReply(outcome.body);
        if (!reply) this.diverge(batch, op, `retry of ${eventId} answered ${describeOutcome(outcome)}`, user);
        increment(this.counters.deliveries, "answered_2xx");
        if (reply.duplicate) increment(this.counters.deliveries, "answered_duplicate");
        // The unanswered attempt may still have landed meanwhile: duplicate either way.
        const checked: CheckedOp = { kind: "delivery", op, eventId, reply, lenientDuplicate: true };
        this.applySequential(batch, user, checked, candidates);
        return;
      }
      if (outcome.answered && outcome.status < 500) {
        this.diverge(batch, op, `Stripe's retry of ${eventId} answered ${describeOutcome(outcome)}`, user);
      }
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
    this.diverge(batch, op, `${eventId} was never answered 2xx after 20 retries`, user);
  }

  /** The backend retries an unanswered spend with the same key, as the idempotency contract allows. */
  private async retrySpend(
    batch: PlannedBatch,
    spend: { user: number; key: string; amount: number; op: number },
    candidates: Map<number, UserState[]>,
    found: boolean,
  ): Promise<void> {
    increment(this.counters.spends, "retries");
    const { outcome } = await this.spendOnce(spend.user, spend.key, spend.amount);
    if (!outcome.answered || outcome.status >= 500) {
      this.diverge(
        batch,
        spend.op,
        `retry of spend ${spend.key} answered ${describeOutcome(outcome)}`,
        spend.user,
      );
    }
    const reply = this.spendReply(outcome);
    if (!reply) {
      this.diverge(
        batch,
        spend.op,
        `retry of spend ${spend.key} answered ${describeOutcome(outcome)}`,
        spend.user,
      );
    }
    if (!found && reply.kind === "ok" && reply.replayed) {
      // Landed after the look-up: only possible if a request outlived the barrier.
      this.diverge(
        batch,
        spend.op,
        `spend ${spend.key} was not in the ledger after the barrier but its retry was a replay`,
        spend.user,
      );
    }
    const checked: CheckedOp = { kind: "spend", op: spend.op, key: spend.key, amount: spend.amount, reply };
    this.applySequential(batch, spend.user, checked, candidates);
  }

  private applySequential(
    batch: PlannedBatch,
    user: number,
    op: CheckedOp,
    candidates: Map<number, UserState[]>,
  ) {
    const states = candidates.get(user) ?? [this.states[user]];
    const next = states.flatMap((state) => step(this.catalog, user, state, op));
    this.note(user, this.describeChecked(op));
    if (next.length === 0) {
      this.diverge(
        batch,
        op.op,
        `${this.describeChecked(op)}: the model allows ${
          describeExpectation(this.catalog, user, states[0], op)
        }`,
        user,
      );
    }
    candidates.set(user, next);
    this.countOps(op);
  }

  private countOps(op: CheckedOp): void {
    if (op.kind === "spend" && op.reply.kind === "ok") {
      increment(this.counters.spends, op.reply.replayed ? "replayed" : "debited");
    } else if (op.kind === "spend" && op.reply.kind === "refused") {
      increment(this.counters.spends, `refused_${op.reply.code}`);
    }
  }

  private checkRepair(batch: PlannedBatch, attempt: Attempt): void {
    const outcome = attempt.outcome as Outcome & { answered: true };
    if (outcome.status !== 200) {
      this.diverge(batch, attempt.op.index, `${attempt.kind} answered ${describeOutcome(outcome)}`);
    }
    if (attempt.kind === "monitor") {
      // A monitor run records a step that raised instead of raising: none may have.
      const errors = isRecord(outcome.body) && Array.isArray(outcome.body.errors) ? outcome.body.errors : [];
      if (errors.length > 0 || (isRecord(outcome.body) && outcome.body.status === "failed")) {
        this.diverge(
          batch,
          attempt.op.index,
          `the monitor run failed: ${JSON.stringify(outcome.body).slice(0, 800)}`,
        );
      }
      return;
    }
    const body = outcome.body;
    const runUsers = new Set(this.userIds);
    const steps = isRecord(body) && Array.isArray(body.steps) ? body.steps : [];
    for (const s of steps) {
      const changes = isRecord(s) && Array.isArray(s.changes) ? s.changes : [];
      for (const change of changes) {
        if (!isRecord(change)) continue;
        if (runUsers.has(String(change.user_id)) || this.catalog.events.has(String(change.target_id))) {
          this.diverge(
            batch,
            attempt.op.index,
            `fix_all_credits changed something of this run, where nothing needed a repair: ${
              JSON.stringify(change)
            }`,
          );
        }
      }
    }
  }

  private async compareWithDatabase(
    batch: PlannedBatch,
    users: number[],
    candidates: Map<number, UserState[]>,
    attempts: Attempt[],
  ): Promise<void> {
    const ids = users.map((i) => this.userIds[i]);
    const rows = await retryDb(() =>
      this.sql`
        select u.id, coalesce(b.balance, 0) as balance, coalesce(b.total_recharged, 0) as total_recharged
        from unnest(${ids}::uuid[]) as u(id)
        left join public.user_credit_balance b on b.user_id = u.id`
    );
    const inDb = new Map(rows.map((row) => [row.id as string, row]));
    const batchEvents = [
      ...new Set(attempts.flatMap((a) => (a.kind === "delivery" ? [a.eventId] : []))),
    ];
    const inboxRows = batchEvents.length === 0 ? [] : await retryDb(() =>
      this
        .sql`select event_id from credit_private.stripe_webhook_event where event_id = any(${batchEvents})`
    );
    const inInbox = new Set(inboxRows.map((row) => row.event_id as string));
    const firstOp = (user: number) => {
      const own = attempts.filter((a) =>
        ("user" in a && a.user === user) ||
        (a.kind === "delivery" && this.catalog.event(a.eventId).user === user)
      );
      return own.length > 0 ? Math.min(...own.map((a) => a.op.index)) : batch.ops[0].index;
    };

    for (const user of users) {
      const row = inDb.get(this.userIds[user]);
      const balance = Number(row?.balance ?? 0);
      const totalRecharged = Number(row?.total_recharged ?? 0);
      const states = candidates.get(user) ?? [this.states[user]];
      const matching = states.filter((state) => {
        const model = this.catalog.balances(user, state);
        if (model.balance !== balance || model.totalRecharged !== totalRecharged) return false;
        return batchEvents.every((eventId) =>
          this.catalog.event(eventId).user !== user || state.recorded.has(eventId) === inInbox.has(eventId)
        );
      });
      if (matching.length === 0) {
        const model = this.catalog.balances(user, states[0]);
        const missing = batchEvents.filter((e) =>
          this.catalog.event(e).user === user && states[0].recorded.has(e) !== inInbox.has(e)
        );
        this.diverge(
          batch,
          firstOp(user),
          `the database differs from the model for user ${user}: balance ${balance} (model ${model.balance}), ` +
            `total_recharged ${totalRecharged} (model ${model.totalRecharged})` +
            (missing.length > 0 ? `; inbox presence differs for ${missing.join(", ")}` : "") +
            (await this.explainPurchases(user, batchEvents, states[0])),
          user,
        );
      }
      this.states[user] = settled(matching[0]);
      if (matching.length > 1) increment(this.counters.checks, "ambiguous_states");
      this.counters.checks.model_comparisons_passed++;
    }

    const violations = await retryDb(() => invariantViolations(this.sql, ids));
    if (violations.length > 0) {
      const user = this.userIds.findIndex((id) => violations[0].includes(id));
      this.diverge(
        batch,
        user >= 0 ? firstOp(user) : batch.ops[0].index,
        `invariants broken: ${violations.join("; ")}`,
        user >= 0 ? user : undefined,
      );
    }
    this.counters.checks.invariant_checks_passed += ids.length * INVARIANTS_PER_USER;
  }

  // -------------------------------------------------------------------------------------
  // Checkpoints: totals, inbox, diagnosis
  // -------------------------------------------------------------------------------------

  /** The inbox and recharge rows behind a user's events of a batch, next to what the model says. */
  private async explainPurchases(user: number, eventIds: string[], state: UserState): Promise<string> {
    const mine = eventIds.filter((id) => this.catalog.event(id).user === user);
    const purchases = [...new Set(mine.map((id) => this.catalog.event(id).purchase).filter((p) => p >= 0))];
    const related = [...this.catalog.events.values()].filter((e) => purchases.includes(e.purchase)).map((e) =>
      e.id
    );
    const inbox = await retryDb(() =>
      this.sql`select event_id, type, status from credit_private.stripe_webhook_event
        where event_id = any(${related}) order by event_id`
    );
    const recharges = await retryDb(() =>
      this
        .sql`select stripe_checkout_session_id as session, status, credits, refunded_credits, disputed_credits
        from public.credit_recharge
        where stripe_checkout_session_id = any(${purchases.map((p) => this.purchase(p).sessionId)})`
    );
    const lines = inbox.map((row) => {
      const event = this.catalog.event(row.event_id as string);
      const expected = state.recorded.has(event.id)
        ? this.catalog.inboxStatus(event, state)
        : "(not delivered)";
      return `inbox ${row.event_id} ${row.type} (purchase ${event.purchase}): ${row.status}, model: ${expected}`;
    });
    for (const row of recharges) {
      lines.push(
        `recharge ${row.session}: ${row.status}, ${row.credits} credits, refunded ${row.refunded_credits}, ` +
          `disputed ${row.disputed_credits}`,
      );
    }
    return lines.length > 0 ? `\n  in the database:\n    ${lines.join("\n    ")}` : "";
  }

  private async diagnose(): Promise<Record<string, unknown>> {
    const outcome = await rpc(this.db, "diagnose_credits", { max_rows: 100000 });
    if (!outcome.answered || outcome.status !== 200 || !isRecord(outcome.body)) {
      throw new Error(`diagnose_credits answered ${describeOutcome(outcome)}`);
    }
    return outcome.body;
  }

  private installationFindings(report: Record<string, unknown>): string[] {
    const categories = isRecord(report.categories) ? report.categories : {};
    const installation = isRecord(categories.installation) ? categories.installation : {};
    const findings = Array.isArray(installation.findings) ? installation.findings : [];
    return findings.filter(isRecord).map((f) => `${f.kind} ${f.name}: ${f.problem}`);
  }

  async checkpoint(label: string, final: boolean): Promise<void> {
    const batch: PlannedBatch = {
      index: this.batches,
      ops: [{ kind: "repair", index: this.generator.plannedOps }],
    };
    const at = this.generator.plannedOps;
    const fail = (detail: string, user?: number): never =>
      this.diverge(batch, at, `${label}: ${detail}`, user);

    // Totals: every user's balance and total_recharged, and their sums, equal the model's.
    const ids = this.userIds;
    const rows = await retryDb(() =>
      this.sql`
        select u.id, coalesce(b.balance, 0) as balance, coalesce(b.total_recharged, 0) as total_recharged
        from unnest(${ids}::uuid[]) as u(id)
        left join public.user_credit_balance b on b.user_id = u.id`
    );
    const db = new Map(rows.map((row) => [row.id as string, row]));
    let modelTotal = 0;
    let dbTotal = 0;
    let modelRecharged = 0;
    let dbRecharged = 0;
    const negative = new Map<string, number>();
    this.userIds.forEach((id, user) => {
      const model = this.catalog.balances(user, this.states[user]);
      const row = db.get(id);
      modelTotal += model.balance;
      modelRecharged += model.totalRecharged;
      dbTotal += Number(row?.balance ?? 0);
      dbRecharged += Number(row?.total_recharged ?? 0);
      if (model.balance < 0) negative.set(id, model.balance);
      if (Number(row?.balance ?? 0) !== model.balance) {
        fail(`user ${user} has balance ${row?.balance ?? 0}, the model ${model.balance}`, user);
      }
    });
    if (modelTotal !== dbTotal || modelRecharged !== dbRecharged) {
      fail(
        `total credits ${dbTotal} (model ${modelTotal}), total recharged ${dbRecharged} (model ${modelRecharged})`,
      );
    }
    this.totals = { model_balance: modelTotal, db_balance: dbTotal, total_recharged: dbRecharged };

    const violations = await retryDb(() => invariantViolations(this.sql, ids));
    if (violations.length > 0) fail(`invariants broken: ${violations.join("; ")}`);
    this.counters.checks.invariant_checks_passed += ids.length * INVARIANTS_PER_USER;

    // The inbox: every recorded event of the run in the status the model gives it; on the
    // final checkpoint every event Stripe sent is processed (or ignored), none left deferred.
    const eventIds = [...this.catalog.events.keys()];
    const inbox = await retryDb(() =>
      this.sql`select event_id, status, last_error from credit_private.stripe_webhook_event
        where event_id = any(${eventIds})`
    );
    const statuses = new Map(inbox.map((row) => [row.event_id as string, row]));
    for (const [eventId, event] of this.catalog.events) {
      const state = this.states[event.user];
      const row = statuses.get(eventId);
      if (!state.recorded.has(eventId)) {
        if (row) fail(`${eventId} is in the inbox (${row.status}) but was never delivered`, event.user);
        if (final) fail(`${eventId} (${event.kind}) was never delivered`, event.user);
        continue;
      }
      const expected = this.catalog.inboxStatus(event, state);
      if (!row || row.status !== expected) {
        fail(
          `${eventId} (${event.kind}, purchase ${event.purchase}) is ${
            row?.status ?? "missing"
          } in the inbox, ` +
            `the model says ${expected}${row?.last_error ? ` (last error: ${row.last_error})` : ""}`,
          event.user,
        );
      }
      if (final && expected === "deferred") fail(`${eventId} is still deferred at the end`, event.user);
    }

    // The diagnosis: nothing wrong about this run's users and events; negative balances only
    // where the model has them, explained by clawbacks; no installation problem beyond those
    // present before the run.
    const report = await this.diagnose();
    const categories = isRecord(report.categories) ? report.categories : {};
    const runUsers = new Set(this.userIds);
    const findingsOf = (name: string) => {
      const category = isRecord(categories[name]) ? categories[name] : {};
      return (Array.isArray(category.findings) ? category.findings : []).filter(isRecord);
    };
    for (
      const name of [
        "orphaned_recharges",
        "dangling_recharge_entries",
        "balance_mismatches",
        "stuck_recharges",
      ]
    ) {
      const mine = findingsOf(name).filter((f) => runUsers.has(String(f.user_id)));
      if (mine.length > 0) fail(`diagnose_credits reports ${name}: ${JSON.stringify(mine).slice(0, 800)}`);
    }
    const failed = findingsOf("failed_webhooks").filter((f) => this.catalog.events.has(String(f.event_id)));
    if (failed.length > 0) {
      fail(`diagnose_credits reports failed_webhooks: ${JSON.stringify(failed).slice(0, 800)}`);
    }
    const negatives = findingsOf("negative_balances").filter((f) => runUsers.has(String(f.user_id)));
    const reported = new Set(negatives.map((f) => String(f.user_id)));
    for (const id of negative.keys()) {
      if (!reported.has(id)) {
        fail(`user ${id} is negative (${negative.get(id)}) but not in negative_balances`);
      }
    }
    for (const finding of negatives) {
      if (!negative.has(String(finding.user_id))) {
        fail(`negative_balances names ${finding.user_id}, which the model has at or above zero`);
      }
      if (Number(finding.clawed_back) < -Number(finding.balance)) {
        fail(
          `negative balance of ${finding.user_id} is not explained by clawbacks: ${JSON.stringify(finding)}`,
        );
      }
    }
    const newProblems = this.installationFindings(report).filter((f) => !this.installationBaseline.has(f));
    if (newProblems.length > 0) {
      fail(`installation problems appeared during the run: ${newProblems.join("; ")}`);
    }
    this.counters.checks.diagnosis_checks_passed++;
    this.counters.checks.checkpoints_passed++;
    this.options.log(
      `  ${label}: ${this.generator.plannedOps} ops, ${this.batches} batches, total credits ${dbTotal} = model, ` +
        `${this.counters.checks.invariant_checks_passed} invariant checks passed`,
    );
  }

  private totals: Record<string, number> = {};

  // -------------------------------------------------------------------------------------
  // The run
  // -------------------------------------------------------------------------------------

  async run(): Promise<void> {
    let nextCheckpoint = this.options.checkpointEvery;
    for (let batch = this.generator.nextBatch(); batch; batch = this.generator.nextBatch()) {
      await this.runBatch(batch);
      if (this.generator.plannedOps >= nextCheckpoint) {
        await this.checkpoint(`checkpoint at op ${this.generator.plannedOps}`, false);
        nextCheckpoint += this.options.checkpointEvery;
      }
    }
    // Stripe sends every event it has not sent yet, in a shuffled order, a few at a time.
    this.syncCatalog();
    for (const rest of this.generator.drainUnsent(6)) {
      increment(this.counters.deliveries, "final_drain", rest.length);
      const ops: PlannedOp[] = rest.map((eventId) => ({
        kind: "deliver" as const,
        index: this.generator.plannedOps,
        eventId,
        redelivery: false,
      }));
      await this.runBatch({ index: this.batches + 1, ops }, true);
    }
    await this.checkpoint("final check", true);
  }

  summary(result: "ok" | "diverged"): Summary {
    const purchases: Record<string, number> = {};
    for (const p of this.generator.purchases) increment(purchases, p.flow);
    const events: Record<string, number> = {};
    for (const e of this.generator.events) increment(events, e.kind);
    return {
      seed: this.options.seed,
      ops: this.generator.plannedOps,
      batches: this.batches,
      users: this.options.users,
      duration_seconds: Math.round((performance.now() - this.started) / 100) / 10,
      monitor_function: this.monitor,
      gateway_supervised: this.options.gatewaySupervised,
      operations: this.counters.operations,
      stripe: { purchases, events },
      deliveries: this.counters.deliveries,
      spends: this.counters.spends,
      faults: this.counters.faults,
      checks: this.counters.checks,
      totals: this.totals,
      result,
    };
  }
}
