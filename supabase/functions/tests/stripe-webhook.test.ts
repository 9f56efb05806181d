// The stripe-webhook function end to end: signed fixtures of every handled event type go
// through the gateway, the function and the RPC into the real database.
import assert from "node:assert/strict";
import { createUser, inboxRow, invariantViolations, ledgerState, withDb } from "./_helpers/db.ts";
import {
  checkoutEvent,
  deliver,
  disputeEvent,
  fixture,
  refundEvent,
  uniqueId,
} from "./_helpers/stripe-events.ts";

Deno.test("checkout.session.completed (paid) credits the buyer once and the three rows agree", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const event = checkoutEvent("checkout.session.completed", { userId, credits: 1000, amountCents: 1000 });

    const first = await deliver(event);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, {
      received: true,
      eventId: event.id,
      status: "processed",
      duplicate: false,
    });

    const [recharge] = await sql`select status, credits, amount_cents, currency, completed_at,
      stripe_payment_intent_id from public.credit_recharge where stripe_checkout_session_id = ${event.data.object.id}`;
    assert.equal(recharge.status, "completed");
    assert.equal(Number(recharge.credits), 1000);
    assert.equal(Number(recharge.amount_cents), 1000);
    assert.equal(recharge.currency, "usd");
    assert.ok(recharge.completed_at);
    assert.equal(recharge.stripe_payment_intent_id, event.data.object.payment_intent);

    const state = await ledgerState(sql, userId);
    assert.deepEqual(state, {
      balance: 1000n,
      totalRecharged: 1000n,
      ledgerSum: 1000n,
      rechargeEntries: 1000n,
      entries: 1,
    });
    assert.equal((await inboxRow(sql, event.id)).status, "processed");

    const again = await deliver(event);
    assert.equal(again.status, 200);
    assert.equal(again.body.duplicate, true);
    assert.deepEqual(await ledgerState(sql, userId), state);
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
  });
});

Deno.test("checkout.session.completed (unpaid) records a pending recharge; async_payment_succeeded credits it", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const sessionId = uniqueId("cs");
    const paymentIntentId = uniqueId("pi");
    const options = { userId, credits: 2500, sessionId, paymentIntentId };

    const completed = await deliver(
      checkoutEvent("checkout.session.completed", { ...options, paymentStatus: "unpaid" }),
    );
    assert.equal(completed.status, 200);
    let [recharge] =
      await sql`select status from public.credit_recharge where stripe_checkout_session_id = ${sessionId}`;
    assert.equal(recharge.status, "pending");
    assert.equal((await ledgerState(sql, userId)).balance, 0n);

    const succeeded = await deliver(checkoutEvent("checkout.session.async_payment_succeeded", options));
    assert.equal(succeeded.status, 200);
    [recharge] =
      await sql`select status from public.credit_recharge where stripe_checkout_session_id = ${sessionId}`;
    assert.equal(recharge.status, "completed");
    assert.equal((await ledgerState(sql, userId)).balance, 2500n);
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
  });
});

Deno.test("checkout.session.async_payment_failed and expired close a pending recharge without credit", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    for (
      const [type, expected] of [
        ["checkout.session.async_payment_failed", "failed"],
        ["checkout.session.expired", "expired"],
      ] as const
    ) {
      const sessionId = uniqueId("cs");
      await deliver(
        checkoutEvent("checkout.session.completed", {
          userId,
          credits: 10,
          sessionId,
          paymentStatus: "unpaid",
        }),
      );
      const closed = await deliver(
        checkoutEvent(type, { userId, credits: 10, sessionId, paymentStatus: "unpaid" }),
      );
      assert.equal(closed.status, 200);
      const [recharge] = await sql`select status, completed_at from public.credit_recharge
        where stripe_checkout_session_id = ${sessionId}`;
      assert.equal(recharge.status, expected);
      assert.equal(recharge.completed_at, null);
    }
    assert.equal((await ledgerState(sql, userId)).entries, 0);
  });
});

Deno.test("charge.refunded claws back in proportion, cumulatively, never twice", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const paymentIntentId = uniqueId("pi");
    const chargeId = uniqueId("ch");
    await deliver(
      checkoutEvent("checkout.session.completed", {
        userId,
        credits: 1000,
        amountCents: 2000,
        paymentIntentId,
      }),
    );

    // 25% refunded, delivered twice, then a second partial refund reaching 50%, then the
    // first one again out of order.
    const quarter = refundEvent(paymentIntentId, 2000, 500, chargeId);
    const half = refundEvent(paymentIntentId, 2000, 1000, chargeId);
    assert.equal((await deliver(quarter)).status, 200);
    assert.equal((await deliver(quarter)).body.duplicate, true);
    assert.equal((await deliver(half)).status, 200);
    assert.equal((await deliver(refundEvent(paymentIntentId, 2000, 500, chargeId))).status, 200);

    const state = await ledgerState(sql, userId);
    assert.equal(state.balance, 500n);
    assert.equal(state.totalRecharged, 1000n);
    const refunds = await sql`select amount from public.credit_transaction
      where user_id = ${userId} and type = 'refund' order by created_at`;
    assert.deepEqual(refunds.map((r) => Number(r.amount)), [-250, -250]);

    await deliver(refundEvent(paymentIntentId, 2000, 2000, chargeId));
    const [recharge] = await sql`select status, refunded_credits from public.credit_recharge
      where stripe_payment_intent_id = ${paymentIntentId}`;
    assert.equal(recharge.status, "refunded");
    assert.equal(Number(recharge.refunded_credits), 1000);
    assert.equal((await ledgerState(sql, userId)).balance, 0n);
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
  });
});

Deno.test("a refund that arrives before its payment is deferred, then applied when the payment lands", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const paymentIntentId = uniqueId("pi");
    const refund = refundEvent(paymentIntentId, 1000, 1000);

    const early = await deliver(refund);
    assert.equal(early.status, 200);
    assert.equal(early.body.status, "deferred");
    assert.equal((await inboxRow(sql, refund.id)).status, "deferred");

    await deliver(
      checkoutEvent("checkout.session.completed", {
        userId,
        credits: 300,
        amountCents: 1000,
        paymentIntentId,
      }),
    );
    assert.equal((await inboxRow(sql, refund.id)).status, "processed");
    const state = await ledgerState(sql, userId);
    assert.equal(state.balance, 0n);
    assert.equal(state.totalRecharged, 300n);
  });
});

Deno.test("disputes: created holds the credits, won restores them, lost keeps them taken", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const won = uniqueId("pi");
    const lost = uniqueId("pi");
    await deliver(
      checkoutEvent("checkout.session.completed", {
        userId,
        credits: 100,
        amountCents: 1000,
        paymentIntentId: won,
      }),
    );
    await deliver(
      checkoutEvent("checkout.session.completed", {
        userId,
        credits: 200,
        amountCents: 1000,
        paymentIntentId: lost,
      }),
    );

    const wonDispute = uniqueId("dp");
    const lostDispute = uniqueId("dp");
    assert.equal(
      (await deliver(disputeEvent("charge.dispute.created", won, 1000, "needs_response", wonDispute))).status,
      200,
    );
    assert.equal(
      (await deliver(disputeEvent("charge.dispute.created", lost, 1000, "needs_response", lostDispute)))
        .status,
      200,
    );
    assert.equal((await ledgerState(sql, userId)).balance, 0n);

    await deliver(disputeEvent("charge.dispute.closed", won, 1000, "won", wonDispute));
    await deliver(disputeEvent("charge.dispute.closed", lost, 1000, "lost", lostDispute));
    assert.equal((await ledgerState(sql, userId)).balance, 100n);

    const disputes = await sql`select dispute_status, disputed_credits from public.credit_recharge
      where stripe_payment_intent_id in (${won}, ${lost}) order by credits`;
    assert.deepEqual(disputes.map((d) => [d.dispute_status, Number(d.disputed_credits)]), [["won", 0], [
      "lost",
      200,
    ]]);
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
  });
});

Deno.test("event types the package does not handle are answered 200 and recorded as ignored", async () => {
  await withDb(async (sql) => {
    const event = fixture("customer.created");
    event.id = uniqueId("evt");
    const response = await deliver(event);
    assert.equal(response.status, 200);
    assert.equal(response.body.status, "ignored");
    assert.equal((await inboxRow(sql, event.id)).status, "ignored");
  });
});

Deno.test("malformed metadata is stored as failed with a clear reason, answered 500, never credited", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const cases: Array<[string, (session: Record<string, unknown>) => void, RegExp]> = [
      ["no user", (s) => {
        s.client_reference_id = null;
        s.metadata = { credits: "10" };
      }, /names no user/],
      ["not a uuid", (s) => {
        s.client_reference_id = "alice";
      }, /not a uuid/],
      ["unknown user", (s) => {
        s.client_reference_id = crypto.randomUUID();
      }, /unknown user/],
      ["zero credits", (s) => {
        s.metadata = { credits: "0" };
      }, /not a positive integer/],
      ["text credits", (s) => {
        s.metadata = { credits: "ten" };
      }, /not a positive integer/],
    ];
    for (const [name, mutate, reason] of cases) {
      const event = checkoutEvent("checkout.session.completed", { userId, credits: 10 });
      mutate(event.data.object);
      const response = await deliver(event);
      assert.equal(response.status, 500, name);
      assert.deepEqual(response.body, {
        error: "the event failed and is stored for retry",
        eventId: event.id,
      }, name);
      const row = await inboxRow(sql, event.id);
      assert.equal(row.status, "failed", name);
      assert.equal(row.last_error_code, "CR003", name);
      assert.match(row.last_error, reason, name);
      assert.equal(Number(row.attempts), 1, name);
    }
    assert.equal((await ledgerState(sql, userId)).entries, 0);
  });
});

Deno.test("a failed delivery is retried by Stripe's next delivery and then credited once", async () => {
  await withDb(async (sql) => {
    const userId = crypto.randomUUID();
    const event = checkoutEvent("checkout.session.completed", { userId, credits: 42 });
    assert.equal((await deliver(event)).status, 500);
    await sql`insert into auth.users (id, email) values (${userId}, ${`late-${userId}@test.local`})`;
    const retried = await deliver(event);
    assert.equal(retried.status, 200);
    assert.equal(retried.body.status, "processed");
    const row = await inboxRow(sql, event.id);
    assert.equal(Number(row.attempts), 2);
    assert.equal(row.last_error, null);
    assert.equal((await ledgerState(sql, userId)).balance, 42n);
  });
});
