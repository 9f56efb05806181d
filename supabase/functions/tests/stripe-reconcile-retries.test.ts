// Stripe answering 429 or 500: reconciliation retries with backoff, reports every retry, and
// when Stripe keeps failing it stops, says so, and marks nothing done that was not.
import assert from "node:assert/strict";
import { createUser, ledgerState, withDb } from "./_helpers/db.ts";
import { checkoutEvent } from "./_helpers/stripe-events.ts";
import { checkoutSession, createdAgo, insertPendingRecharge, rechargeRow } from "./_helpers/checkout.ts";
import { startFakeStripe } from "./_helpers/fake-stripe.ts";
import { quick, runReconcile, setWatermark, watermarkEpoch } from "./_helpers/reconcile.ts";

Deno.test("rate-limit and 500 answers on the events list are retried and reported", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 3600);
      const userId = await createUser(sql);
      stripe.addEvent(createdAgo(checkoutEvent("checkout.session.completed", { userId, credits: 42 }), 900));
      stripe.failNext("GET /v1/events", [429, 500]);

      const { status, report } = await runReconcile(quick);
      assert.equal(status, 200, JSON.stringify(report));
      assert.equal(report.ok, true);
      assert.equal(report.stripe.retries, 2);
      assert.deepEqual(
        report.stripe.retryLog.map((r: { reason: string; statusCode: number; attempt: number }) => [
          r.reason,
          r.statusCode,
          r.attempt,
        ]),
        [["rate_limited", 429, 1], ["server_error", 500, 2]],
      );
      assert.ok(report.stripe.retryLog.every((r: { waitMs: number }) => r.waitMs >= 2 && r.waitMs <= 20));
      assert.equal(report.stripe.requests, stripe.requests.length);
      assert.deepEqual(stripe.requests.slice(0, 3).map((r) => r.status), [429, 500, 200]);
      assert.equal(report.events.processed, 1);
      assert.equal((await ledgerState(sql, userId)).balance, 42n);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("Stripe failing beyond the retries stops the run and leaves the watermark", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 3600);
      const userId = await createUser(sql);
      stripe.addEvent(createdAgo(checkoutEvent("checkout.session.completed", { userId, credits: 8 }), 900));
      const watermark = await watermarkEpoch(sql);
      stripe.failNext("GET /v1/events", [500, 503, 502]);

      const { status, report } = await runReconcile({ ...quick, retry: { maxRetries: 2, baseDelayMs: 5 } });
      assert.equal(status, 500);
      assert.equal(report.ok, false);
      assert.equal(report.limits.stoppedBy, "stripe_unavailable");
      assert.equal(report.stripe.retries, 2);
      assert.equal(report.stripe.requests, 3);
      assert.equal(report.errors[0].stage, "events");
      assert.equal(report.errors[0].error.statusCode, 502);
      assert.equal(report.errors[0].error.retryable, true);
      assert.equal(report.events.fed, 0);
      assert.equal(report.watermark.advanced, false);
      assert.equal(await watermarkEpoch(sql), watermark);
      assert.equal((await ledgerState(sql, userId)).balance, 0n);
      // The failed run is stored too.
      const [run] =
        await sql`select ok from credit_private.stripe_reconciliation_run order by id desc limit 1`;
      assert.equal(run.ok, false);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("a rate-limited session retrieval is retried and the recharge still resolves", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 60);
      const userId = await createUser(sql);
      const { sessionId } = await insertPendingRecharge(sql, userId, 30, 4 * 3600);
      stripe.setSession(
        checkoutSession({ sessionId, userId, credits: 30, status: "complete", paymentStatus: "paid" }),
      );
      stripe.failNext("GET /v1/checkout/sessions", [429, 429]);

      const { status, report } = await runReconcile({
        ...quick,
        maxSessions: 1000,
        pendingOlderThanSeconds: 3 * 3600,
      });
      assert.equal(status, 200, JSON.stringify(report));
      const retries = report.stripe.retryLog.filter((r: { call: string }) =>
        r.call === "checkout.sessions.retrieve"
      );
      assert.equal(retries.length, 2);
      assert.ok(retries.every((r: { reason: string }) => r.reason === "rate_limited"));
      const [recharge] = await rechargeRow(sql, sessionId);
      assert.equal(recharge.status, "completed");
      assert.equal((await ledgerState(sql, userId)).balance, 30n);
    });
  } finally {
    await stripe.close();
  }
});
