// The torture run's reference model on its own (no stack needed): the policy it encodes and
// the linearization check that judges concurrent answers.
import assert from "node:assert/strict";
import {
  Catalog,
  type CheckedOp,
  emptyUserState,
  linearize,
  type ModelEvent,
  type SpendReply,
  step,
  type UserState,
} from "./model.ts";

function catalogWith(events: Array<Omit<ModelEvent, "user" | "purchase"> & { purchase?: number }>): Catalog {
  const catalog = new Catalog();
  catalog.addPurchase({ index: 0, user: 0, credits: 100, amountCents: 1000 });
  for (const event of events) catalog.addEvent({ user: 0, purchase: 0, ...event });
  return catalog;
}

function recording(...ids: string[]): UserState {
  return { ...emptyUserState(), recorded: new Set(ids) };
}

Deno.test("model: a paid purchase credits once; refunds count cumulatively, the largest wins", () => {
  const catalog = catalogWith([
    { id: "pay", kind: "completed_paid" },
    { id: "r1", kind: "refund", refundedCents: 250 },
    { id: "r2", kind: "refund", refundedCents: 400 },
  ]);
  assert.deepEqual(catalog.balances(0, recording("pay")), { balance: 100, totalRecharged: 100 });
  assert.equal(catalog.balances(0, recording("pay", "r2")).balance, 60);
  assert.equal(
    catalog.balances(0, recording("pay", "r1", "r2")).balance,
    60,
    "r1 after r2 takes nothing more",
  );
  assert.equal(catalog.balances(0, recording("r1", "r2")).balance, 0, "refunds wait for their payment");
});

Deno.test("model: disputes hold credits, a won dispute gives them back, a lost one keeps them", () => {
  const catalog = catalogWith([
    { id: "pay", kind: "completed_paid" },
    { id: "open", kind: "dispute_created", disputeAmount: 500 },
    { id: "won", kind: "dispute_closed", disputeAmount: 500, disputeOutcome: "won" },
    { id: "refund", kind: "refund", refundedCents: 800 },
  ]);
  assert.equal(catalog.balances(0, recording("pay", "open")).balance, 50);
  assert.equal(catalog.balances(0, recording("pay", "open", "won")).balance, 100);
  assert.equal(catalog.balances(0, recording("pay", "won")).balance, 100, "a close before its open");
  assert.equal(
    catalog.balances(0, recording("pay", "open", "refund")).balance,
    0,
    "never more than the credits",
  );
  const lost = catalogWith([
    { id: "pay", kind: "completed_paid" },
    { id: "lost", kind: "dispute_closed", disputeAmount: 250, disputeOutcome: "lost" },
  ]);
  assert.equal(lost.balances(0, recording("pay", "lost")).balance, 75);
});

Deno.test("model: deliveries are processed, deferred before their payment, duplicate when recorded", () => {
  const catalog = catalogWith([{ id: "pay", kind: "completed_paid" }, {
    id: "r",
    kind: "refund",
    refundedCents: 10,
  }]);
  const deliver = (eventId: string, status: string, duplicate: boolean): CheckedOp => ({
    kind: "delivery",
    op: 1,
    eventId,
    reply: { status, duplicate },
  });
  assert.equal(step(catalog, 0, emptyUserState(), deliver("r", "deferred", false)).length, 1);
  assert.equal(step(catalog, 0, emptyUserState(), deliver("r", "processed", false)).length, 0);
  assert.equal(
    step(catalog, 0, recording("r"), deliver("r", "deferred", false)).length,
    1,
    "re-tried, still deferred",
  );
  assert.equal(step(catalog, 0, recording("pay", "r"), deliver("r", "processed", true)).length, 1);
  assert.equal(
    step(catalog, 0, recording("pay"), deliver("pay", "processed", false)).length,
    0,
    "must be duplicate",
  );
});

Deno.test("model: spends debit once per key, refuse overdrafts (CR001) and other amounts (CR002)", () => {
  const catalog = catalogWith([{ id: "pay", kind: "completed_paid" }]);
  const spend = (amount: number, reply: SpendReply): CheckedOp => ({
    kind: "spend",
    op: 1,
    key: "k",
    amount,
    reply,
  });
  const [after] = step(
    catalog,
    0,
    recording("pay"),
    spend(30, { kind: "ok", balanceAfter: 70, replayed: false, transactionId: "t1" }),
  );
  assert.equal(catalog.balances(0, after).balance, 70);
  assert.equal(
    step(catalog, 0, after, spend(30, { kind: "ok", balanceAfter: 70, replayed: true, transactionId: "t1" }))
      .length,
    1,
  );
  assert.equal(step(catalog, 0, after, spend(31, { kind: "refused", code: "CR002" })).length, 1);
  assert.equal(step(catalog, 0, recording("pay"), spend(101, { kind: "refused", code: "CR001" })).length, 1);
  assert.equal(step(catalog, 0, recording("pay"), spend(100, { kind: "refused", code: "CR001" })).length, 0);
});

Deno.test("model: concurrent answers are accepted only when some order explains them", () => {
  const catalog = catalogWith([{ id: "pay", kind: "completed_paid" }]);
  const ops = (balances: number[]): CheckedOp[] =>
    balances.map((balanceAfter, i) => ({
      kind: "spend",
      op: i + 1,
      key: `k${i}`,
      amount: 40,
      reply: balanceAfter < 0
        ? { kind: "refused", code: "CR001" }
        : { kind: "ok", balanceAfter, replayed: false, transactionId: `t${i}` },
    }));
  // 100 credits, three spends of 40 at once: two succeed (60 then 20), one is refused.
  assert.equal(linearize(catalog, 0, recording("pay"), ops([20, -1, 60])).length, 1);
  assert.equal(
    linearize(catalog, 0, recording("pay"), ops([60, 60, -1])).length,
    0,
    "two debits from one balance",
  );
  assert.equal(
    linearize(catalog, 0, recording("pay"), ops([60, -1, -1])).length,
    0,
    "a refusal with 60 left",
  );
});

Deno.test("model: a deferred refund redelivered while its payment lands may be applied by either", () => {
  const catalog = catalogWith([{ id: "pay", kind: "completed_paid" }, {
    id: "r",
    kind: "refund",
    refundedCents: 500,
  }]);
  const ops: CheckedOp[] = [
    { kind: "delivery", op: 1, eventId: "pay", reply: { status: "processed", duplicate: false } },
    { kind: "delivery", op: 2, eventId: "r", reply: { status: "processed", duplicate: false } },
  ];
  const states = linearize(catalog, 0, recording("r"), ops);
  assert.equal(states.length, 1);
  assert.equal(catalog.balances(0, states[0]).balance, 50);
});
