// The torture run's plan on its own (no stack needed): deterministic per seed, every event
// Stripe creates delivered, every kind of fault present, payments delivered with their
// refunds and disputes at once.
import assert from "node:assert/strict";
import { Generator, type PlannedBatch, type PlannedOp } from "./generator.ts";

function plan(seed: number, ops: number) {
  const generator = new Generator({ seed, ops, users: 8, runTag: "t" });
  const batches: PlannedBatch[] = [];
  for (let batch = generator.nextBatch(); batch; batch = generator.nextBatch()) batches.push(batch);
  const drain = generator.drainUnsent(6);
  return { generator, batches, drain };
}

const eventsOf = (op: PlannedOp): string[] =>
  op.kind === "deliver" || op.kind === "burst" ? [op.eventId] : op.kind === "related" ? op.eventIds : [];

Deno.test("torture plan: the same seed gives the same plan", () => {
  const a = plan(3, 400);
  const b = plan(3, 400);
  assert.deepEqual(a.batches, b.batches);
  assert.deepEqual(a.drain, b.drain);
  assert.notDeepEqual(plan(4, 400).batches, a.batches);
});

Deno.test("torture plan: exactly the asked operations, every event delivered, every fault kind", () => {
  for (const seed of [1, 2, 42]) {
    const { generator, batches, drain } = plan(seed, 1500);
    assert.equal(batches.flatMap((b) => b.ops).length, 1500);
    const planned = new Set([...batches.flatMap((b) => b.ops.flatMap(eventsOf)), ...drain.flat()]);
    assert.deepEqual(generator.events.filter((e) => !planned.has(e.id)).map((e) => e.id), [], `seed ${seed}`);
    const faults = new Set(batches.flatMap((b) => (b.fault ? [b.fault.kind] : [])));
    assert.deepEqual([...faults].sort(), ["backend_kill", "pg_restart"]);
  }
});

Deno.test("torture plan: payments are delivered together with their refunds or disputes", () => {
  const { generator, batches } = plan(1, 300);
  const byId = new Map(generator.events.map((e) => [e.id, e]));
  const paid = (kind: string) => kind === "completed_paid" || kind === "async_succeeded";
  const clawback = (kind: string) => kind === "refund" || kind.startsWith("dispute");
  const together = batches.filter((b) => {
    const events = b.ops.flatMap(eventsOf).map((id) => byId.get(id));
    return events.some((x) =>
      events.some((y) =>
        x && y && x.purchase === y.purchase && x.purchase >= 0 && paid(x.kind) && clawback(y.kind)
      )
    );
  });
  assert.ok(together.length > 0, "the short run of npm test delivers a payment with its clawback at once");
});
