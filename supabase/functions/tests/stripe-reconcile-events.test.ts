// Reconciliation of missed Stripe events, end to end: the fake Stripe lists events, the
// stripe-reconcile function feeds those the inbox lacks through public.handle_stripe_event,
// and the ledger ends up as if the webhook had delivered them, exactly once.
import assert from "node:assert/strict";
import { createUser, inboxRow, invariantViolations, ledgerState, withDb } from "./_helpers/db.ts";
import { checkoutEvent, deliver } from "./_helpers/stripe-events.ts";
import { createdAgo } from "./_helpers/checkout.ts";
import { type FakeStripe, startFakeStripe } from "./_helpers/fake-stripe.ts";
import { quick, runReconcile, setWatermark, watermarkEpoch } from "./_helpers/reconcile.ts";

const paid = (userId: string, credits: number, ageSeconds: number) =>
  createdAgo(checkoutEvent("checkout.session.completed", { userId, credits }), ageSeconds);

Deno.test("missed events are found and credited once; a second run finds nothing to do", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 3600);
      const users = [
        await createUser(sql),
        await createUser(sql),
        await createUser(sql),
        await createUser(sql),
      ];
      const neverDelivered = paid(users[0], 100, 1800);
      const failedDelivery = paid(users[1], 200, 1500);
      // Stripe counts this one delivered (the endpoint said 200), yet the inbox lacks it.
      const lostLocally = paid(users[2], 300, 1200);
      const delivered = paid(users[3], 400, 900);
      stripe.addEvent(neverDelivered, { delivered: false });
      stripe.addEvent(failedDelivery, { delivered: false });
      stripe.addEvent(lostLocally, { delivered: true });
      stripe.addEvent(delivered, { delivered: true });
      assert.equal((await deliver(delivered)).status, 200);

      const { status, report } = await runReconcile(quick);
      assert.equal(status, 200, JSON.stringify(report));
      assert.equal(report.ok, true);
      assert.equal(report.events.listedUndelivered, 2);
      assert.equal(report.events.listedAll, 4);
      assert.equal(report.events.fed, 3);
      assert.equal(report.events.processed, 3);
      assert.equal(report.events.alreadySettled, 1);
      assert.deepEqual(
        report.events.items.map((item: { id: string; pass: string }) => [item.id, item.pass]),
        [[neverDelivered.id, "undelivered"], [failedDelivery.id, "undelivered"], [lostLocally.id, "all"]],
      );
      for (const [i, credits] of [100n, 200n, 300n, 400n].entries()) {
        assert.equal((await ledgerState(sql, users[i])).balance, credits);
      }
      assert.equal((await inboxRow(sql, lostLocally.id)).status, "processed");

      // The delivery_success=false pass runs before the full one.
      const lists = stripe.requests.filter((r) => r.route === "GET /v1/events");
      assert.equal(lists[0].query.get("delivery_success"), "false");
      assert.equal(lists.at(-1)?.query.get("delivery_success"), null);
      assert.deepEqual(
        [0, 1, 2, 3, 4, 5, 6].map((i) => lists[0].query.get(`types[${i}]`)),
        [
          "checkout.session.completed",
          "checkout.session.async_payment_succeeded",
          "checkout.session.async_payment_failed",
          "checkout.session.expired",
          "charge.refunded",
          "charge.dispute.created",
          "charge.dispute.closed",
        ],
      );

      // Nothing new since: the next run starts at the watermark and lists nothing.
      const next = await runReconcile(quick);
      assert.equal(next.report.events.listedAll, 0);
      // Over the same window again, everything is found settled and nothing is fed.
      await setWatermark(sql, 3600);
      const again = await runReconcile(quick);
      assert.equal(again.report.events.fed, 0);
      assert.equal(again.report.events.alreadySettled, 4);
      for (const [i, credits] of [100n, 200n, 300n, 400n].entries()) {
        assert.equal((await ledgerState(sql, users[i])).balance, credits);
      }
      assert.deepEqual(await invariantViolations(sql, users), []);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("an event fed by reconciliation while the webhook delivers it at the same time credits once", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 3600);
      const users: string[] = [];
      const events = [];
      for (let i = 0; i < 12; i++) {
        const userId = await createUser(sql);
        users.push(userId);
        const event = paid(userId, 10 + i, 600 - i);
        events.push(event);
        stripe.addEvent(event, { delivered: false });
      }

      // Reconciliation and five webhook deliveries of every event, all at once.
      const [run, ...deliveries] = await Promise.all([
        runReconcile(quick),
        ...events.flatMap((event) => Array.from({ length: 5 }, () => deliver(event))),
      ]);
      assert.equal(run.status, 200, JSON.stringify(run.report));
      assert.equal(run.report.events.failed, 0);
      assert.ok(deliveries.every((d) => d.status === 200));
      assert.equal(
        run.report.events.fed + run.report.events.alreadySettled,
        12,
        "every event was either fed or found settled",
      );

      for (const [i, userId] of users.entries()) {
        const state = await ledgerState(sql, userId);
        assert.equal(state.balance, BigInt(10 + i));
        assert.equal(state.entries, 1);
        assert.equal((await inboxRow(sql, events[i].id)).status, "processed");
      }
      assert.deepEqual(await invariantViolations(sql, users), []);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("events are listed across several pages with starting_after", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 3600);
      const userId = await createUser(sql);
      const events = Array.from({ length: 7 }, (_, i) => paid(userId, 1 + i, 3000 - i * 100));
      for (const event of events) stripe.addEvent(event);

      const { status, report } = await runReconcile({ ...quick, pageSize: 2 });
      assert.equal(status, 200, JSON.stringify(report));
      assert.equal(report.events.listedAll, 7);
      assert.equal(report.events.processed, 7);
      assert.equal((await ledgerState(sql, userId)).balance, 28n);
      // Oldest first.
      assert.deepEqual(report.events.items.map((item: { id: string }) => item.id), events.map((e) => e.id));

      const fullPass = stripe.requests.filter((r) =>
        r.route === "GET /v1/events" && r.query.get("delivery_success") === null
      );
      assert.equal(fullPass.length, 4);
      assert.deepEqual(fullPass.map((r) => r.query.get("limit")), ["2", "2", "2", "2"]);
      // Newest first from Stripe: each page continues after the last id of the previous one.
      assert.deepEqual(fullPass.map((r) => r.query.get("starting_after")), [
        null,
        events[5].id,
        events[3].id,
        events[1].id,
      ]);
    });
  } finally {
    await stripe.close();
  }
});

/** Runs a test step with its own fake Stripe, so that each step sees only its own events. */
function withStripe(fn: (stripe: FakeStripe) => Promise<void>): () => Promise<void> {
  return async () => {
    const stripe = startFakeStripe();
    try {
      await fn(stripe);
    } finally {
      await stripe.close();
    }
  };
}

Deno.test("the watermark advances over processed events only", async (t) => {
  await withDb(async (sql) => {
    await t.step(
      "all settled: it moves up to the settle delay before now",
      withStripe(async (stripe) => {
        await setWatermark(sql, 3600);
        const userId = await createUser(sql);
        stripe.addEvent(paid(userId, 5, 1000));
        const before = Math.floor(Date.now() / 1000);
        const { report } = await runReconcile(quick);
        const done = Math.floor(Date.now() / 1000);
        const after = await watermarkEpoch(sql);
        // now - settleSeconds (60), "now" being when the function started the run.
        assert.ok(after !== null && after >= before - 60 && after <= done - 60, `watermark ${after}`);
        assert.equal(report.watermark.advanced, true);
        assert.equal(Date.parse(report.watermark.after) / 1000, after);
      }),
    );

    await t.step(
      "a failed event holds it at that event, and later events are still fed",
      withStripe(async (stripe) => {
        await setWatermark(sql, 3600);
        const userId = await createUser(sql);
        const missingUser = crypto.randomUUID();
        const failing = paid(missingUser, 7, 1800);
        const later = paid(userId, 9, 1200);
        stripe.addEvent(failing, { delivered: false });
        stripe.addEvent(later);

        const first = await runReconcile(quick);
        assert.equal(first.status, 200, JSON.stringify(first.report));
        assert.equal(first.report.events.failed, 1);
        assert.equal(first.report.events.processed, 1);
        assert.equal(await watermarkEpoch(sql), failing.created);
        assert.equal(first.report.watermark.verifiedUpTo, new Date(failing.created * 1000).toISOString());
        assert.ok(first.report.warnings.some((w: string) => w.includes("failed and hold the watermark")));
        assert.equal((await ledgerState(sql, userId)).balance, 9n);
        assert.equal((await inboxRow(sql, failing.id)).status, "failed");

        // The next run retries it; once its user exists, it is credited and the watermark moves.
        await sql`insert into auth.users (id, email) values (${missingUser}, ${`late-${missingUser}@test.local`})`;
        const second = await runReconcile(quick);
        assert.equal(second.report.events.fed, 1);
        assert.equal(second.report.events.processed, 1);
        assert.equal((await ledgerState(sql, missingUser)).balance, 7n);
        assert.ok((await watermarkEpoch(sql) ?? 0) > later.created);
        assert.equal(Number((await inboxRow(sql, failing.id)).attempts), 2);
      }),
    );

    await t.step(
      "a run out of event budget stops at the first event it did not feed",
      withStripe(async (stripe) => {
        await setWatermark(sql, 3600);
        const userId = await createUser(sql);
        const events = Array.from({ length: 5 }, (_, i) => paid(userId, 1, 2000 - i * 60));
        for (const event of events) stripe.addEvent(event);

        const first = await runReconcile({ ...quick, maxEvents: 2 });
        assert.equal(first.status, 200);
        assert.equal(first.report.events.fed, 2);
        assert.equal(first.report.limits.stoppedBy, "max_events");
        assert.equal(await watermarkEpoch(sql), events[2].created);
        assert.equal((await ledgerState(sql, userId)).balance, 2n);

        const second = await runReconcile({ ...quick, maxEvents: 2 });
        assert.equal(second.report.events.listedAll, 3, "listing resumes at the first unfed event");
        assert.equal(second.report.events.fed, 2);
        assert.equal(await watermarkEpoch(sql), events[4].created);
        const third = await runReconcile({ ...quick, maxEvents: 2 });
        assert.equal(third.report.events.fed, 1);
        assert.equal(third.report.limits.stoppedBy, null);
        assert.equal((await ledgerState(sql, userId)).balance, 5n);
      }),
    );

    await t.step(
      "a window with more events than maxListedEvents is halved, oldest half first",
      withStripe(async (stripe) => {
        await setWatermark(sql, 3600);
        const userId = await createUser(sql);
        for (let i = 0; i < 8; i++) stripe.addEvent(paid(userId, 1, 3000 - i * 300));
        const { report } = await runReconcile({ ...quick, maxListedEvents: 3, pageSize: 2 });
        assert.equal(report.ok, true, JSON.stringify(report));
        assert.ok(report.events.windowsSplit > 0);
        assert.ok(report.events.windows > 1);
        assert.equal(report.events.processed, 8);
        assert.equal((await ledgerState(sql, userId)).balance, 8n);
        assert.ok((await watermarkEpoch(sql) ?? 0) >= Math.floor(Date.now() / 1000) - 70);
      }),
    );

    await t.step(
      "a dry run feeds nothing and leaves the watermark",
      withStripe(async (stripe) => {
        await setWatermark(sql, 3600);
        const userId = await createUser(sql);
        stripe.addEvent(paid(userId, 3, 1000), { delivered: false });
        const watermark = await watermarkEpoch(sql);
        const { report } = await runReconcile({ ...quick, dryRun: true });
        assert.equal(report.dryRun, true);
        assert.equal(report.events.wouldFeed, 1);
        assert.equal(report.events.fed, 0);
        assert.equal(report.watermark.advanced, false);
        assert.equal(await watermarkEpoch(sql), watermark);
        assert.equal((await ledgerState(sql, userId)).balance, 0n);
      }),
    );
  });
});

Deno.test("a watermark near or past Stripe's 30-day retention is warned about", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 26 * 86_400);
      const near = await runReconcile({ ...quick, dryRun: true });
      assert.ok(
        near.report.warnings.some((w: string) =>
          /26\.0 days old; Stripe deletes events after 30 days/.test(w)
        ),
      );

      await setWatermark(sql, 31 * 86_400);
      const past = await runReconcile({ ...quick, dryRun: true });
      assert.ok(
        past.report.warnings.some((w: string) => w.includes("beyond Stripe's 30-day event retention")),
      );

      await setWatermark(sql, 3600);
      const fresh = await runReconcile({ ...quick, dryRun: true });
      assert.deepEqual(fresh.report.warnings, []);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("the first run starts initialLookbackSeconds back and stores the run", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, null);
      const userId = await createUser(sql);
      stripe.addEvent(paid(userId, 11, 5000));
      stripe.addEvent(paid(userId, 13, 9000), { delivered: false }); // before the lookback

      const { report } = await runReconcile({ ...quick, initialLookbackSeconds: 7200 });
      assert.equal(report.watermark.before, null);
      assert.equal(report.events.processed, 1);
      assert.equal((await ledgerState(sql, userId)).balance, 11n);
      const [run] = await sql`select ok, dry_run, report from credit_private.stripe_reconciliation_run
        order by id desc limit 1`;
      assert.equal(run.ok, true);
      assert.equal(run.report.startedAt, report.startedAt);
    });
  } finally {
    await stripe.close();
  }
});
