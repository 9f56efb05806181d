// Pending recharges older than the threshold are settled from their Checkout Session as
// Stripe has it: paid -> completed and credited once, expired -> expired, a failed bank
// debit -> failed, still open or processing -> left pending, unknown to Stripe -> left
// pending and reported.
import assert from "node:assert/strict";
import { createUser, invariantViolations, ledgerState, withDb } from "./_helpers/db.ts";
import { checkoutEvent, deliver, type StripeEvent, uniqueId } from "./_helpers/stripe-events.ts";
import { checkoutSession, insertPendingRecharge, paymentIntent, rechargeRow } from "./_helpers/checkout.ts";
import { startFakeStripe } from "./_helpers/fake-stripe.ts";
import { runReconcile, setWatermark } from "./_helpers/reconcile.ts";

const HOUR = 3600;
// Older than any pending recharge the other test files leave behind, younger than ours.
const options = {
  retry: { baseDelayMs: 5, maxDelayMs: 20 },
  maxSessions: 1000,
  pendingOlderThanSeconds: 3 * HOUR,
};

// deno-lint-ignore no-explicit-any
type Item = Record<string, any>;

Deno.test("stale pending recharges resolve to the state of their Checkout Session", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 60);
      const userId = await createUser(sql);
      const pending = async (credits: number) => await insertPendingRecharge(sql, userId, credits, 4 * HOUR);
      const paid = await pending(100);
      const expired = await pending(200);
      const debitFailed = await pending(300);
      const open = await pending(400);
      const processing = await pending(500);
      const unknown = await pending(600);
      const recent = await insertPendingRecharge(sql, userId, 700, HOUR);

      const session = (s: { sessionId: string }, credits: number, rest: Item) =>
        checkoutSession(
          { sessionId: s.sessionId, userId, credits, ...rest } as Parameters<typeof checkoutSession>[0],
        );
      const paidIntent = uniqueId("pi");
      stripe.setSession(
        session(paid, 100, { status: "complete", paymentStatus: "paid", paymentIntentId: paidIntent }),
      );
      stripe.setSession(session(expired, 200, { status: "expired", paymentStatus: "unpaid" }));
      const failedIntent = uniqueId("pi");
      stripe.setSession(
        session(debitFailed, 300, {
          status: "complete",
          paymentStatus: "unpaid",
          paymentIntentId: failedIntent,
        }),
        paymentIntent(failedIntent, "requires_payment_method", 300),
      );
      stripe.setSession(session(open, 400, { status: "open", paymentStatus: "unpaid" }));
      const processingIntent = uniqueId("pi");
      stripe.setSession(
        session(processing, 500, {
          status: "complete",
          paymentStatus: "unpaid",
          paymentIntentId: processingIntent,
        }),
        paymentIntent(processingIntent, "processing", 500),
      );

      const { status, report } = await runReconcile(options);
      assert.equal(status, 200, JSON.stringify(report));
      const byRecharge = new Map<string, Item>(
        report.pendingRecharges.items.map((item: Item) => [item.rechargeId, item]),
      );
      const outcome = (r: { rechargeId: string }) => byRecharge.get(r.rechargeId)?.outcome;
      assert.equal(outcome(paid), "completed");
      assert.equal(byRecharge.get(paid.rechargeId)?.credited, true);
      assert.equal(outcome(expired), "expired");
      assert.equal(outcome(debitFailed), "failed");
      assert.equal(outcome(open), "still_pending");
      assert.equal(outcome(processing), "still_pending");
      assert.equal(outcome(unknown), "session_not_found");
      assert.equal(byRecharge.has(recent.rechargeId), false, "younger than the threshold");

      const statusOf = async (s: { sessionId: string }) => (await rechargeRow(sql, s.sessionId))[0].status;
      assert.equal(await statusOf(paid), "completed");
      assert.equal(await statusOf(expired), "expired");
      assert.equal(await statusOf(debitFailed), "failed");
      assert.equal(await statusOf(open), "pending");
      assert.equal(await statusOf(processing), "pending");
      assert.equal(await statusOf(unknown), "pending");
      assert.equal((await rechargeRow(sql, paid.sessionId))[0].stripe_payment_intent_id, paidIntent);
      assert.deepEqual(await ledgerState(sql, userId), {
        balance: 100n,
        totalRecharged: 100n,
        ledgerSum: 100n,
        rechargeEntries: 100n,
        entries: 1,
      });

      // Sessions are retrieved with their PaymentIntent expanded.
      const retrieval = stripe.requests.find((r) =>
        r.path === `/v1/checkout/sessions/${debitFailed.sessionId}`
      );
      assert.equal(retrieval?.query.get("expand[0]"), "payment_intent");

      // The checks are remembered; the next run asks again only about what is still pending.
      const [check] = await sql`select checks, last_outcome from credit_private.pending_recharge_check
        where recharge_id = ${unknown.rechargeId}`;
      assert.deepEqual({ ...check, checks: Number(check.checks) }, {
        checks: 1,
        last_outcome: "session_not_found",
      });
      const again = await runReconcile(options);
      const ids = again.report.pendingRecharges.items.map((item: Item) => item.rechargeId);
      assert.ok(!ids.includes(paid.rechargeId) && !ids.includes(expired.rechargeId));
      assert.ok(ids.includes(open.rechargeId) && ids.includes(unknown.rechargeId));
      assert.equal((await ledgerState(sql, userId)).balance, 100n);
      assert.deepEqual(await invariantViolations(sql, [userId]), []);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("a pending recharge resolved while its webhook lands at the same moment is credited once", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 60);
      const users: string[] = [];
      const events: StripeEvent[] = [];
      for (let i = 0; i < 8; i++) {
        const userId = await createUser(sql);
        users.push(userId);
        const { sessionId } = await insertPendingRecharge(sql, userId, 50 + i, 4 * HOUR);
        const paymentIntentId = uniqueId("pi");
        stripe.setSession(checkoutSession({
          sessionId,
          userId,
          credits: 50 + i,
          status: "complete",
          paymentStatus: "paid",
          paymentIntentId,
        }));
        events.push(checkoutEvent("checkout.session.completed", {
          userId,
          credits: 50 + i,
          sessionId,
          paymentIntentId,
        }));
      }

      const [run, ...deliveries] = await Promise.all([
        runReconcile(options),
        ...events.flatMap((event) => [deliver(event), deliver(event)]),
      ]);
      assert.equal(run.status, 200, JSON.stringify(run.report));
      assert.ok(deliveries.every((d) => d.status === 200));
      for (const [i, userId] of users.entries()) {
        const state = await ledgerState(sql, userId);
        assert.equal(state.balance, BigInt(50 + i));
        assert.equal(state.entries, 1);
      }
      const mine = run.report.pendingRecharges.items.filter((item: Item) =>
        events.some((event) => event.data.object.id === item.sessionId)
      );
      // Each one was either settled by this run or found already settled by the webhook.
      assert.ok(mine.every((item: Item) => ["completed", "already_resolved"].includes(item.outcome)));
      assert.deepEqual(await invariantViolations(sql, users), []);
    });
  } finally {
    await stripe.close();
  }
});
