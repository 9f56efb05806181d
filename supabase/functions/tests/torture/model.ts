// The reference model of the torture run: what the ledger must hold after a set of Stripe
// events and spends, and what each operation is allowed to answer. Pure code (no I/O), so
// model.test.ts checks it on its own.
//
// The database applies events in whatever order they arrive; the model does not replay that
// order. It computes each purchase's effect from the SET of its events that are recorded,
// using the documented policy (README "What each event does"), which is order-independent:
//   credited   = a paid checkout event (completed + paid, or async_payment_succeeded) is recorded
//   refunded   = credits * max(amount_refunded) / amount, rounded down
//   held       = dispute lost, or opened and not (yet) won / warning_closed: credits * disputed / amount
//   net effect = credited ? credits - min(credits, refunded + held) : 0
// Spends are applied in the order the checker linearizes them (see linearize.ts).

export type EventKind =
  | "completed_paid"
  | "completed_unpaid"
  | "async_succeeded"
  | "async_failed"
  | "expired"
  | "refund"
  | "dispute_created"
  | "dispute_closed"
  | "other";

export type DisputeOutcome = "won" | "lost" | "warning_closed";

export interface ModelEvent {
  id: string;
  kind: EventKind;
  /** The purchase (Checkout Session / PaymentIntent) it belongs to; -1 for unrelated events. */
  purchase: number;
  user: number;
  /** charge.refunded: the cumulative amount_refunded it carries. */
  refundedCents?: number;
  /** charge.dispute.*: the disputed amount. */
  disputeAmount?: number;
  /** charge.dispute.closed: how it ended. */
  disputeOutcome?: DisputeOutcome;
}

export interface ModelPurchase {
  index: number;
  user: number;
  credits: number;
  amountCents: number;
}

export interface SpendRecord {
  amount: number;
  balanceAfter: number;
  transactionId: string;
}

/** One user's state as the model sees it. Treated as immutable: steps return new states. */
export interface UserState {
  /** Event ids in the inbox (any status): each delivery answered 2xx, or found there after a fault. */
  recorded: ReadonlySet<string>;
  /** Purchases whose pending recharge record_pending_recharge created. */
  pendingRecorded: ReadonlySet<number>;
  /** Spend keys debited, with their first result. */
  spends: ReadonlyMap<string, SpendRecord>;
  /**
   * Refunds and disputes that were deferred when their payment landed in the current batch.
   * The payment applies each of them, unless a concurrent redelivery of that event holds its
   * inbox row: the payment then skips it and the redelivery applies it, answering processed
   * and not duplicate. Either way it is applied once; emptied after each batch.
   */
  handedOver: ReadonlySet<string>;
}

export function emptyUserState(): UserState {
  return { recorded: new Set(), pendingRecorded: new Set(), spends: new Map(), handedOver: new Set() };
}

/** credit_private.proportional_credits: credits * numerator / denominator, rounded down. */
export function proportionalCredits(credits: number, numerator: number, denominator: number): number {
  if (denominator <= 0 || numerator >= denominator) return credits;
  return Math.floor(credits * Math.max(numerator, 0) / denominator);
}

const PAID_KINDS: ReadonlySet<EventKind> = new Set(["completed_paid", "async_succeeded"]);
const CHECKOUT_KINDS: ReadonlySet<EventKind> = new Set([
  "completed_paid",
  "completed_unpaid",
  "async_succeeded",
  "async_failed",
  "expired",
]);

export function isCheckoutKind(kind: EventKind): boolean {
  return CHECKOUT_KINDS.has(kind);
}

export type RechargeStatus = "pending" | "completed" | "failed" | "expired" | "refunded";

export interface PurchaseOutcome {
  /** A credit_recharge row exists for the session. */
  exists: boolean;
  credited: boolean;
  status: RechargeStatus | null;
  /** What the purchase adds to the balance (credits minus clawbacks). */
  net: number;
  /** What it adds to total_recharged. */
  recharged: number;
}

/** Everything the catalogue of the run knows: purchases and events by id. */
export class Catalog {
  readonly purchases: ModelPurchase[] = [];
  readonly events = new Map<string, ModelEvent>();
  readonly eventsByPurchase = new Map<number, ModelEvent[]>();
  readonly purchasesByUser = new Map<number, number[]>();

  addPurchase(purchase: ModelPurchase): void {
    this.purchases[purchase.index] = purchase;
    const list = this.purchasesByUser.get(purchase.user) ?? [];
    list.push(purchase.index);
    this.purchasesByUser.set(purchase.user, list);
  }

  addEvent(event: ModelEvent): void {
    this.events.set(event.id, event);
    if (event.purchase >= 0) {
      const list = this.eventsByPurchase.get(event.purchase) ?? [];
      list.push(event);
      this.eventsByPurchase.set(event.purchase, list);
    }
  }

  event(id: string): ModelEvent {
    const event = this.events.get(id);
    if (!event) throw new Error(`unknown event ${id}`);
    return event;
  }

  /** The purchase's effect given which of its events are recorded. */
  purchaseOutcome(index: number, state: UserState): PurchaseOutcome {
    const purchase = this.purchases[index];
    const recorded = (this.eventsByPurchase.get(index) ?? []).filter((event) => state.recorded.has(event.id));
    const kinds = new Set(recorded.map((event) => event.kind));
    const exists = state.pendingRecorded.has(index) || recorded.some((event) => isCheckoutKind(event.kind));
    const credited = recorded.some((event) => PAID_KINDS.has(event.kind));
    if (!credited) {
      let status: RechargeStatus | null = null;
      if (exists) {
        status = kinds.has("async_failed") ? "failed" : kinds.has("expired") ? "expired" : "pending";
      }
      return { exists, credited, status, net: 0, recharged: 0 };
    }
    const refundedCents = Math.max(0, ...recorded.map((event) => event.refundedCents ?? 0));
    const refunded = refundedCents > 0
      ? proportionalCredits(purchase.credits, refundedCents, purchase.amountCents)
      : 0;
    const closed = recorded.find((event) => event.kind === "dispute_closed");
    const opened = recorded.find((event) => event.kind === "dispute_created");
    const dispute = closed ?? opened;
    const heldNow = closed ? closed.disputeOutcome === "lost" : opened !== undefined;
    const held = heldNow && dispute
      ? proportionalCredits(purchase.credits, dispute.disputeAmount ?? 0, purchase.amountCents)
      : 0;
    const net = purchase.credits - Math.min(purchase.credits, refunded + held);
    const status: RechargeStatus = refundedCents >= purchase.amountCents ? "refunded" : "completed";
    return { exists: true, credited, status, net, recharged: purchase.credits };
  }

  balances(user: number, state: UserState): { balance: number; totalRecharged: number } {
    let balance = 0;
    let totalRecharged = 0;
    for (const index of this.purchasesByUser.get(user) ?? []) {
      const outcome = this.purchaseOutcome(index, state);
      balance += outcome.net;
      totalRecharged += outcome.recharged;
    }
    for (const spend of state.spends.values()) balance -= spend.amount;
    return { balance, totalRecharged };
  }

  /** The inbox status a recorded event must have: processed, ignored or deferred. */
  inboxStatus(event: ModelEvent, state: UserState): "processed" | "ignored" | "deferred" {
    if (event.kind === "other") return "ignored";
    if (isCheckoutKind(event.kind)) return "processed";
    return this.purchaseOutcome(event.purchase, state).credited ? "processed" : "deferred";
  }
}

// ---------------------------------------------------------------------------------------
// Operations as the checker sees them: what was sent and what came back.
// ---------------------------------------------------------------------------------------

/** What a webhook delivery answered with 2xx: {status, duplicate}. */
export interface DeliveryReply {
  status: string;
  duplicate: boolean;
}

export type SpendReply =
  | { kind: "ok"; balanceAfter: number; replayed: boolean; transactionId: string }
  | { kind: "refused"; code: string };

export type CheckedOp =
  /** A delivery answered 2xx. lenientDuplicate: an earlier attempt was in doubt, so it may have landed. */
  | { kind: "delivery"; op: number; eventId: string; reply: DeliveryReply; lenientDuplicate?: boolean }
  /** A delivery without an answer, whose event was found in the inbox afterwards. */
  | { kind: "delivery_landed"; op: number; eventId: string }
  | { kind: "spend"; op: number; key: string; amount: number; reply: SpendReply }
  /** A spend without an answer; dbRow is what the ledger holds under its key afterwards (if anything). */
  | { kind: "spend_in_doubt"; op: number; key: string; amount: number; dbRow: SpendRecord | null }
  | { kind: "record_pending"; op: number; purchase: number; reply: { created: boolean; status: string } };

/** What the model predicts for a delivery of an event in a state. */
export function predictDelivery(catalog: Catalog, state: UserState, eventId: string): DeliveryReply {
  const event = catalog.event(eventId);
  const before = state.recorded.has(eventId);
  if (event.kind === "other") return { status: "ignored", duplicate: before };
  if (isCheckoutKind(event.kind)) return { status: "processed", duplicate: before };
  const credited = catalog.purchaseOutcome(event.purchase, state).credited;
  if (before) {
    return credited ? { status: "processed", duplicate: true } : { status: "deferred", duplicate: false };
  }
  return { status: credited ? "processed" : "deferred", duplicate: false };
}

function withRecorded(catalog: Catalog, state: UserState, eventId: string): UserState {
  if (state.recorded.has(eventId)) return state;
  const event = catalog.event(eventId);
  const creditsNow = PAID_KINDS.has(event.kind) && !catalog.purchaseOutcome(event.purchase, state).credited;
  const recorded = new Set(state.recorded);
  recorded.add(eventId);
  if (!creditsNow) return { ...state, recorded };
  const handedOver = new Set(state.handedOver);
  for (const other of catalog.eventsByPurchase.get(event.purchase) ?? []) {
    if (!isCheckoutKind(other.kind) && state.recorded.has(other.id)) handedOver.add(other.id);
  }
  return { ...state, recorded, handedOver };
}

/** The state once the batch is over: no handover can happen any more. */
export function settled(state: UserState): UserState {
  return state.handedOver.size === 0 ? state : { ...state, handedOver: new Set() };
}

function withSpend(state: UserState, key: string, record: SpendRecord): UserState {
  const spends = new Map(state.spends);
  spends.set(key, record);
  return { ...state, spends };
}

/** A human-readable statement of what the model allows for an op in a state. */
export function describeExpectation(catalog: Catalog, user: number, state: UserState, op: CheckedOp): string {
  switch (op.kind) {
    case "delivery":
    case "delivery_landed": {
      const reply = predictDelivery(catalog, state, op.eventId);
      return `200 {status: ${reply.status}, duplicate: ${reply.duplicate}}`;
    }
    case "spend":
    case "spend_in_doubt": {
      const previous = state.spends.get(op.key);
      const { balance } = catalog.balances(user, state);
      if (previous) {
        return previous.amount === op.amount
          ? `replay {balance_after: ${previous.balanceAfter}, replayed: true, transaction_id: ${previous.transactionId}}`
          : "CR002 (key reused with another amount)";
      }
      return balance < op.amount
        ? `CR001 (balance ${balance} < ${op.amount})`
        : `debit {balance_after: ${balance - op.amount}, replayed: false}`;
    }
    case "record_pending": {
      const outcome = catalog.purchaseOutcome(op.purchase, state);
      return `{created: ${!outcome.exists}, status: ${outcome.exists ? outcome.status : "pending"}}`;
    }
  }
}

/**
 * The states an op may lead to from `state`, given what it answered; empty when the answer is
 * not allowed. Ops without an answer may or may not have taken effect, so they branch.
 */
export function step(catalog: Catalog, user: number, state: UserState, op: CheckedOp): UserState[] {
  switch (op.kind) {
    case "delivery": {
      if (state.handedOver.has(op.eventId) && op.reply.status === "processed") {
        // Applied by this delivery (not duplicate) or by the payment before it (duplicate).
        const handedOver = new Set(state.handedOver);
        handedOver.delete(op.eventId);
        return [{ ...state, handedOver }];
      }
      const expected = predictDelivery(catalog, state, op.eventId);
      if (op.reply.status !== expected.status) return [];
      if (!op.lenientDuplicate && op.reply.duplicate !== expected.duplicate) return [];
      return [withRecorded(catalog, state, op.eventId)];
    }
    case "delivery_landed":
      return [withRecorded(catalog, state, op.eventId)];
    case "spend": {
      const previous = state.spends.get(op.key);
      const { balance } = catalog.balances(user, state);
      const reply = op.reply;
      if (reply.kind === "refused") {
        if (reply.code === "CR001") return !previous && balance < op.amount ? [state] : [];
        if (reply.code === "CR002") return previous && previous.amount !== op.amount ? [state] : [];
        return [];
      }
      if (previous) {
        const same = previous.amount === op.amount && reply.replayed &&
          reply.balanceAfter === previous.balanceAfter && reply.transactionId === previous.transactionId;
        return same ? [state] : [];
      }
      if (reply.replayed || balance < op.amount || reply.balanceAfter !== balance - op.amount) return [];
      return [withSpend(state, op.key, {
        amount: op.amount,
        balanceAfter: reply.balanceAfter,
        transactionId: reply.transactionId,
      })];
    }
    case "spend_in_doubt": {
      // Either it did nothing (refused, replayed, or never reached the database) or it is the
      // debit the ledger holds under its key.
      const next: UserState[] = [state];
      const row = op.dbRow;
      if (row && !state.spends.has(op.key) && row.amount === op.amount) {
        const { balance } = catalog.balances(user, state);
        if (balance >= op.amount && row.balanceAfter === balance - op.amount) {
          next.push(withSpend(state, op.key, row));
        }
      }
      return next;
    }
    case "record_pending": {
      const outcome = catalog.purchaseOutcome(op.purchase, state);
      const created = !outcome.exists;
      const status = outcome.exists ? outcome.status : "pending";
      if (op.reply.created !== created || op.reply.status !== status) return [];
      if (state.pendingRecorded.has(op.purchase)) return [state];
      const pendingRecorded = new Set(state.pendingRecorded);
      pendingRecorded.add(op.purchase);
      return [{ ...state, pendingRecorded }];
    }
  }
}

/** A key identifying a state, to merge equal states reached by different orders. */
export function stateKey(state: UserState): string {
  const recorded = [...state.recorded].sort().join(",");
  const pending = [...state.pendingRecorded].sort((a, b) => a - b).join(",");
  const spends = [...state.spends.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, spend]) => `${key}=${spend.amount}/${spend.balanceAfter}/${spend.transactionId}`).join(",");
  const handedOver = [...state.handedOver].sort().join(",");
  return `${recorded}|${pending}|${spends}|${handedOver}`;
}

/** A key telling apart ops that are interchangeable in a linearization (same op, same answer). */
function opKey(op: CheckedOp): string {
  switch (op.kind) {
    case "delivery":
      return `d:${op.eventId}:${op.reply.status}:${op.reply.duplicate}:${op.lenientDuplicate ?? false}`;
    case "delivery_landed":
      return `l:${op.eventId}`;
    case "spend":
      return `s:${op.key}:${op.amount}:${JSON.stringify(op.reply)}`;
    case "spend_in_doubt":
      return `u:${op.key}:${op.amount}`;
    case "record_pending":
      return `p:${op.purchase}:${op.reply.created}:${op.reply.status}`;
  }
}

/**
 * The states one user may be in after ops that ran concurrently: every order of the ops in
 * which each answer is the one the model allows (a linearization). Empty: no order explains
 * the answers, the run diverged.
 */
export function linearize(catalog: Catalog, user: number, start: UserState, ops: CheckedOp[]): UserState[] {
  const results = new Map<string, UserState>();
  const seen = new Set<string>();
  const explore = (state: UserState, remaining: CheckedOp[]) => {
    if (remaining.length === 0) {
      results.set(stateKey(state), state);
      return;
    }
    const memo = `${stateKey(state)}#${remaining.map(opKey).sort().join(";")}`;
    if (seen.has(memo)) return;
    seen.add(memo);
    const tried = new Set<string>();
    remaining.forEach((op, index) => {
      const key = opKey(op);
      if (tried.has(key)) return;
      tried.add(key);
      const rest = remaining.filter((_, i) => i !== index);
      for (const next of step(catalog, user, state, op)) explore(next, rest);
    });
  };
  explore(start, ops);
  return [...results.values()];
}
