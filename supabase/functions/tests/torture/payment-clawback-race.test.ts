// Found by the torture run: a refund or dispute delivered while its payment's event was being
// recorded was answered "deferred", but the payment, committing just after, did not apply it:
// it stayed deferred, its credits were never taken back, and nothing retried it (Stripe got a
// 200; retries skip deferred events). Fixed by serialising both on the PaymentIntent
// (credit_private.lock_payment); kept here as a deterministic regression test: the payment is
// recorded in a transaction held open while the clawback is delivered, then committed.
import assert from "node:assert/strict";
import { createUser, inboxRow, ledgerState, withDb } from "../_helpers/db.ts";
import {
  checkoutEvent,
  deliver,
  disputeEvent,
  refundEvent,
  type StripeEvent,
} from "../_helpers/stripe-events.ts";

/** Records `payment` in a transaction kept open while `clawback` is delivered, then commits. */
async function clawbackDuringPayment(
  payment: StripeEvent,
  clawback: StripeEvent,
  before: StripeEvent[] = [],
) {
  await withDb(async (sql) => {
    for (const event of before) assert.equal((await deliver(event)).status, 200);
    const open = await sql.reserve();
    try {
      await open`begin`;
      const [recorded] = await open`select public.handle_stripe_event(${
        sql.json(payment)
      }) ->> 'status' as status`;
      assert.equal(recorded.status, "processed", "the payment is applied (not yet committed)");
      // The clawback reaches the database while the payment is not committed: it either waits
      // for the payment or is deferred; either way it must end applied.
      const delivery = deliver(clawback);
      await new Promise((resolve) => setTimeout(resolve, 300));
      await open`commit`;
      const answer = await delivery;
      assert.equal(answer.status, 200);
      assert.ok(["processed", "deferred"].includes(String(answer.body.status)), JSON.stringify(answer.body));
    } finally {
      open.release();
    }
  });
}

Deno.test("race: a refund delivered while its payment is being recorded is applied once the payment commits", async () => {
  const userId = await withDb(createUser);
  const payment = checkoutEvent("checkout.session.completed", { userId, credits: 100, amountCents: 1000 });
  const refund = refundEvent(payment.data.object.payment_intent, 1000, 1000);
  await clawbackDuringPayment(payment, refund);
  await withDb(async (sql) => {
    assert.equal(
      (await inboxRow(sql, refund.id)).status,
      "processed",
      "the refund is applied, not left deferred",
    );
    assert.equal((await ledgerState(sql, userId)).balance, 0n, "the refunded credits are taken back");
  });
});

Deno.test("race: a dispute opened while its payment is being recorded holds the credits once the payment commits", async () => {
  const userId = await withDb(createUser);
  const payment = checkoutEvent("checkout.session.completed", { userId, credits: 100, amountCents: 1000 });
  const dispute = disputeEvent(
    "charge.dispute.created",
    payment.data.object.payment_intent,
    1000,
    "needs_response",
    `dp_race_${crypto.randomUUID().slice(0, 8)}`,
  );
  await clawbackDuringPayment(payment, dispute);
  await withDb(async (sql) => {
    assert.equal(
      (await inboxRow(sql, dispute.id)).status,
      "processed",
      "the dispute is applied, not left deferred",
    );
    assert.equal((await ledgerState(sql, userId)).balance, 0n, "the disputed credits are held");
  });
});

Deno.test("race: the same for an asynchronous payment (its pending recharge exists)", async () => {
  const userId = await withDb(createUser);
  const session = { userId, credits: 100, amountCents: 1000 };
  const unpaid = checkoutEvent("checkout.session.completed", { ...session, paymentStatus: "unpaid" });
  const ids = { sessionId: unpaid.data.object.id, paymentIntentId: unpaid.data.object.payment_intent };
  const succeeded = checkoutEvent("checkout.session.async_payment_succeeded", { ...session, ...ids });
  const refund = refundEvent(ids.paymentIntentId, 1000, 500);
  await clawbackDuringPayment(succeeded, refund, [unpaid]);
  await withDb(async (sql) => {
    assert.equal(
      (await inboxRow(sql, refund.id)).status,
      "processed",
      "the refund is applied, not left deferred",
    );
    assert.equal((await ledgerState(sql, userId)).balance, 50n, "half the credits are taken back");
  });
});
