// The seeded operation generator: "Stripe" (purchases, async payments, refunds, disputes and
// the events it sends for them) and the backend (spends, pending recharges, repairs, monitor
// runs), cut into batches of operations that run concurrently, with faults attached.
//
// The plan depends on the seed only, never on what the stack answered, so a seed always
// gives the same operations in the same batches with the same faults (what a fault hits, and
// so the answers, can differ from run to run).
import { seededRandom } from "../_helpers/concurrency.ts";
import type { DisputeOutcome, EventKind, ModelEvent, ModelPurchase } from "./model.ts";

export type PlannedOp =
  /** A Stripe delivery of an event; disconnectAfterMs: the client hangs up after sending. */
  | { kind: "deliver"; index: number; eventId: string; redelivery: boolean; disconnectAfterMs?: number }
  /** The same event delivered `copies` times at once. */
  | { kind: "burst"; index: number; eventId: string; copies: number }
  /** Several events of one purchase delivered at once (a payment with its refund, say). */
  | { kind: "related"; index: number; eventIds: string[] }
  | {
    kind: "spend";
    index: number;
    user: number;
    key: string;
    amount: number;
    /** Sent this many times at once (same key). */
    copies: number;
    disconnectAfterMs?: number;
  }
  | { kind: "record_pending"; index: number; purchase: number }
  | { kind: "repair"; index: number }
  | { kind: "monitor"; index: number };

export type FaultKind = "backend_kill" | "pg_restart";

export interface PlannedBatch {
  index: number;
  ops: PlannedOp[];
  fault?: { kind: FaultKind; delayMs: number; downMs: number };
}

export interface StripePurchase extends ModelPurchase {
  sessionId: string;
  paymentIntentId: string;
  chargeId: string;
  flow: "paid" | "async" | "expired";
  asyncOutcome?: "succeeded" | "failed";
  paid: boolean;
  refundedCents: number;
  dispute?: { id: string; amount: number; outcome?: DisputeOutcome };
}

/** An event "Stripe" created: the model's view plus what the payload needs. */
export interface StripeEventPlan extends ModelEvent {
  created: number;
}

export interface GeneratorOptions {
  seed: number;
  ops: number;
  users: number;
  /** Distinguishes this run's ids from earlier runs on the same database. */
  runTag: string;
}

const CREDIT_CHOICES = [5, 10, 20, 50, 100, 200, 500];
const CENTS_PER_CREDIT = [1, 3, 10, 25];

export class Generator {
  readonly purchases: StripePurchase[] = [];
  readonly events: StripeEventPlan[] = [];
  private readonly eventsById = new Map<string, StripeEventPlan>();
  private readonly eventsByPurchase = new Map<number, StripeEventPlan[]>();
  /** Events Stripe has not sent yet, in creation order; picked at random (shuffled delivery). */
  readonly unsent: string[] = [];
  /** Events sent at least once: candidates for duplicate deliveries. */
  readonly sent: string[] = [];
  readonly spendKeys: Array<{ key: string; user: number; amount: number }> = [];
  private readonly random: () => number;
  private opCount = 0;
  private batchCount = 0;
  private eventCount = 0;
  private keyCount = 0;
  private readonly forcedFaults: Array<{ atOp: number; kind: FaultKind }>;

  constructor(private readonly options: GeneratorOptions) {
    this.random = seededRandom(options.seed);
    // Every kind of fault at least once in any run of 60 operations or more.
    this.forcedFaults = options.ops >= 60
      ? [
        { atOp: Math.floor(options.ops * 0.25), kind: "backend_kill" },
        { atOp: Math.floor(options.ops * 0.55), kind: "pg_restart" },
      ]
      : [];
  }

  get plannedOps(): number {
    return this.opCount;
  }

  private int(min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1));
  }

  private chance(p: number): boolean {
    return this.random() < p;
  }

  private pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)];
  }

  /** Removes and returns a random element. */
  private take<T>(items: T[]): T {
    const index = Math.floor(this.random() * items.length);
    const [item] = items.splice(index, 1);
    return item;
  }

  private emit(kind: EventKind, user: number, purchase: number, extra: Partial<ModelEvent> = {}): string {
    const n = ++this.eventCount;
    const id = `evt_torture_${this.options.runTag}_${n}`;
    const event = { id, kind, user, purchase, created: 1_780_000_000 + n, ...extra };
    this.events.push(event);
    this.eventsById.set(id, event);
    if (purchase >= 0) {
      const list = this.eventsByPurchase.get(purchase) ?? [];
      list.push(event);
      this.eventsByPurchase.set(purchase, list);
    }
    this.unsent.push(id);
    return id;
  }

  private newPurchase(): void {
    const index = this.purchases.length;
    const user = this.int(0, this.options.users - 1);
    const credits = this.chance(0.7) ? this.pick(CREDIT_CHOICES) : this.int(1, 300);
    const amountCents = credits * this.pick(CENTS_PER_CREDIT) + this.int(0, 99);
    const roll = this.random();
    const flow = roll < 0.65 ? "paid" : roll < 0.9 ? "async" : "expired";
    const tag = `${this.options.runTag}_${index}`;
    const purchase: StripePurchase = {
      index,
      user,
      credits,
      amountCents,
      sessionId: `cs_torture_${tag}`,
      paymentIntentId: `pi_torture_${tag}`,
      chargeId: `ch_torture_${tag}`,
      flow,
      paid: flow === "paid",
      refundedCents: 0,
    };
    this.purchases.push(purchase);
    if (flow === "paid") this.emit("completed_paid", user, index);
    else if (flow === "async") this.emit("completed_unpaid", user, index);
    else this.emit("expired", user, index);
  }

  /** Stripe does something that produces one event (or a new purchase when nothing fits). */
  private stripeActivity(): void {
    const roll = this.random();
    const paid = this.purchases.filter((p) => p.paid);
    if (roll < 0.4) return this.newPurchase();
    if (roll < 0.55) {
      const waiting = this.purchases.filter((p) => p.flow === "async" && !p.asyncOutcome);
      if (waiting.length === 0) return this.newPurchase();
      const purchase = this.pick(waiting);
      purchase.asyncOutcome = this.chance(0.75) ? "succeeded" : "failed";
      purchase.paid = purchase.asyncOutcome === "succeeded";
      this.emit(purchase.paid ? "async_succeeded" : "async_failed", purchase.user, purchase.index);
      return;
    }
    if (roll < 0.75) {
      // A partial or full refund; Stripe reports the cumulative amount refunded.
      const refundable = paid.filter((p) => p.refundedCents < p.amountCents);
      if (refundable.length === 0) return this.newPurchase();
      const purchase = this.pick(refundable);
      purchase.refundedCents = this.chance(0.3)
        ? purchase.amountCents
        : this.int(purchase.refundedCents + 1, purchase.amountCents);
      this.emit("refund", purchase.user, purchase.index, { refundedCents: purchase.refundedCents });
      return;
    }
    if (roll < 0.85) {
      const undisputed = paid.filter((p) => !p.dispute);
      if (undisputed.length === 0) return this.newPurchase();
      const purchase = this.pick(undisputed);
      const amount = this.chance(0.6) ? purchase.amountCents : this.int(1, purchase.amountCents);
      purchase.dispute = { id: `dp_torture_${this.options.runTag}_${purchase.index}`, amount };
      this.emit("dispute_created", purchase.user, purchase.index, { disputeAmount: amount });
      return;
    }
    if (roll < 0.95) {
      const open = paid.filter((p) => p.dispute && !p.dispute.outcome);
      if (open.length === 0) return this.newPurchase();
      const purchase = this.pick(open);
      const dispute = purchase.dispute!;
      dispute.outcome = this.pick<DisputeOutcome>(["won", "lost", "lost", "warning_closed"]);
      this.emit("dispute_closed", purchase.user, purchase.index, {
        disputeAmount: dispute.amount,
        disputeOutcome: dispute.outcome,
      });
      return;
    }
    // Something the package does not handle (customer.created): answered 200, ignored.
    this.emit("other", this.int(0, this.options.users - 1), -1);
  }

  private disconnect(p: number): number | undefined {
    if (!this.chance(p)) return undefined;
    return this.chance(0.5) ? 0 : this.int(1, 30);
  }

  private nextOp(): PlannedOp {
    const index = ++this.opCount;
    const roll = this.random();
    if (roll < 0.42 || (roll < 0.56 && this.sent.length === 0)) {
      // Stripe creates events a little faster than it delivers them, so a backlog builds up
      // and deliveries come out of order (a refund before its payment, a close before its open).
      if (this.unsent.length === 0 || this.chance(0.85)) this.stripeActivity();
      if (this.chance(0.3)) this.stripeActivity();
      const eventId = this.take(this.unsent);
      this.sent.push(eventId);
      return { kind: "deliver", index, eventId, redelivery: false, disconnectAfterMs: this.disconnect(0.05) };
    }
    if (roll < 0.5) {
      // Stripe sends an event again (it does, even after a 2xx).
      return {
        kind: "deliver",
        index,
        eventId: this.pick(this.sent),
        redelivery: true,
        disconnectAfterMs: this.disconnect(0.05),
      };
    }
    if (roll < 0.56 && this.chance(0.4)) {
      const related = this.relatedEvents();
      if (related.length > 1) return { kind: "related", index, eventIds: related };
    }
    if (roll < 0.56) {
      // The same event, several deliveries at once: a new one or one sent before.
      let eventId: string;
      if (this.unsent.length > 0 && this.chance(0.3)) {
        eventId = this.take(this.unsent);
        this.sent.push(eventId);
      } else {
        eventId = this.pick(this.sent);
      }
      return { kind: "burst", index, eventId, copies: this.int(2, 5) };
    }
    if (roll < 0.9) return this.spendOp(index);
    if (roll < 0.94 && this.purchases.length > 0) {
      return { kind: "record_pending", index, purchase: this.pick(this.purchases).index };
    }
    if (roll < 0.97) return { kind: "repair", index };
    return { kind: "monitor", index };
  }

  /**
   * Two or three events of one purchase, sent or not yet, to deliver concurrently: mostly a
   * payment Stripe has not delivered yet with a refund or dispute of it, the pair whose order
   * matters most (a clawback that arrives with its payment must still be applied).
   */
  private relatedEvents(): string[] {
    const eventsOf = (p: StripePurchase) => this.eventsByPurchase.get(p.index) ?? [];
    const isPayment = (e: StripeEventPlan) => e.kind === "completed_paid" || e.kind === "async_succeeded";
    const isClawback = (e: StripeEventPlan) => e.kind === "refund" || e.kind.startsWith("dispute");
    const unsent = new Set(this.unsent);
    const pending = this.purchases.filter((p) =>
      eventsOf(p).some((e) => isPayment(e) && unsent.has(e.id)) && eventsOf(p).some(isClawback)
    );
    let chosen: string[];
    if (pending.length > 0 && this.chance(0.8)) {
      const events = eventsOf(this.pick(pending));
      const clawbacks = events.filter(isClawback);
      chosen = [events.find(isPayment)?.id ?? "", this.take(clawbacks).id];
      if (clawbacks.length > 0 && this.chance(0.5)) chosen.push(this.take(clawbacks).id);
    } else {
      const candidates = this.purchases.filter((p) => eventsOf(p).length > 1);
      if (candidates.length === 0) return [];
      const events = [...eventsOf(this.pick(candidates))];
      chosen = [];
      const count = Math.min(events.length, this.int(2, 3));
      while (chosen.length < count && events.length > 0) chosen.push(this.take(events).id);
    }
    if (chosen.length < 2) return [];
    for (const eventId of chosen) {
      const position = this.unsent.indexOf(eventId);
      if (position >= 0) {
        this.unsent.splice(position, 1);
        this.sent.push(eventId);
      }
    }
    return chosen;
  }

  private spendOp(index: number): PlannedOp {
    const roll = this.random();
    const copies = this.chance(0.08) ? this.int(2, 4) : 1;
    if (this.spendKeys.length > 0 && roll < 0.17) {
      // A repeated key: the same request again (12%), or the key reused with another amount (5%).
      const previous = this.pick(this.spendKeys);
      const amount = roll < 0.12 ? previous.amount : previous.amount + this.int(1, 20);
      return {
        kind: "spend",
        index,
        user: previous.user,
        key: previous.key,
        amount,
        copies,
        disconnectAfterMs: this.disconnect(0.04),
      };
    }
    const user = this.int(0, this.options.users - 1);
    const size = this.random();
    // Mostly small, some large enough to overdraw.
    const amount = size < 0.7 ? this.int(1, 60) : size < 0.9 ? this.int(61, 300) : this.int(301, 3000);
    const key = `torture-${this.options.runTag}-${++this.keyCount}`;
    this.spendKeys.push({ key, user, amount });
    return { kind: "spend", index, user, key, amount, copies, disconnectAfterMs: this.disconnect(0.04) };
  }

  /** The next batch, or null when every operation has been planned. */
  nextBatch(): PlannedBatch | null {
    if (this.opCount >= this.options.ops) return null;
    const size = Math.min(1 + Math.floor(this.random() ** 2 * 6), this.options.ops - this.opCount);
    const ops: PlannedOp[] = [];
    for (let i = 0; i < size; i++) ops.push(this.nextOp());
    const batch: PlannedBatch = { index: ++this.batchCount, ops };
    let kind: FaultKind | undefined;
    if (this.forcedFaults.length > 0 && this.opCount >= this.forcedFaults[0].atOp) {
      kind = this.forcedFaults.shift()!.kind;
    }
    const roll = this.random();
    if (!kind && roll < 0.004) kind = "pg_restart";
    else if (!kind && roll < 0.034) kind = "backend_kill";
    const delayMs = this.int(0, 25);
    const downMs = this.int(0, 300);
    if (kind) batch.fault = { kind, delayMs, downMs };
    return batch;
  }

  /** Events never sent during the run, shuffled, in batches: Stripe sends them at the end. */
  drainUnsent(size: number): string[][] {
    const batches: string[][] = [];
    let current: string[] = [];
    while (this.unsent.length > 0) {
      const eventId = this.take(this.unsent);
      if (current.length >= size) {
        batches.push(current);
        current = [];
      }
      current.push(eventId);
    }
    if (current.length > 0) batches.push(current);
    return batches;
  }
}
