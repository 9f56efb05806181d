// The admin action reconcile_stripe runs the same reconciliation as the stripe-reconcile
// function (_shared/reconcile-stripe.ts), against the tests' fake Stripe: a dry run says what
// it would feed and changes nothing; a real run credits the missed payment once; Stripe
// unavailable is 502 with the report.
import assert from "node:assert/strict";
import { createUser, inboxRow, ledgerState, withDb } from "./_helpers/db.ts";
import { checkoutEvent } from "./_helpers/stripe-events.ts";
import { createdAgo } from "./_helpers/checkout.ts";
import { startFakeStripe } from "./_helpers/fake-stripe.ts";
import { setWatermark } from "./_helpers/reconcile.ts";
import { auditRows, callAdmin, fingerprint, newClient } from "./_helpers/admin-client.ts";

/** Fast retries, no pending-recharge pass: the test's events are created a moment before. */
const options = { retry: { maxRetries: 1, baseDelayMs: 5, maxDelayMs: 20 }, maxSessions: 0 };

Deno.test("reconcile_stripe credits a payment whose webhook never came; its dry run changes nothing", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 3600);
      const userId = await createUser(sql);
      const missed = createdAgo(checkoutEvent("checkout.session.completed", { userId, credits: 45 }), 1200);
      stripe.addEvent(missed, { delivered: false });
      const client = newClient();

      const before = await fingerprint(sql);
      const dry = await callAdmin({ action: "reconcile_stripe", dryRun: true, options }, { client });
      assert.equal(dry.status, 200, JSON.stringify(dry.body));
      assert.deepEqual([dry.body.action, dry.body.dryRun, dry.body.found, dry.body.changed], [
        "reconcile_stripe",
        true,
        1,
        0,
      ]);
      assert.equal(dry.body.result.events.wouldFeed, 1);
      assert.equal(dry.body.result.dryRun, true);
      assert.equal(await fingerprint(sql), before, "a dry run feeds, advances and stores nothing");
      assert.equal(await inboxRow(sql, missed.id), undefined);

      const real = await callAdmin({ action: "reconcile_stripe", options, reason: "missed webhooks" }, {
        client,
      });
      assert.equal(real.status, 200, JSON.stringify(real.body));
      assert.deepEqual([real.body.dryRun, real.body.found, real.body.changed], [false, 1, 1]);
      assert.equal(real.body.result.events.processed, 1);
      assert.equal(real.body.result.watermark.advanced, true);
      assert.equal((await inboxRow(sql, missed.id)).status, "processed");
      assert.equal((await ledgerState(sql, userId)).balance, 45n);

      const again = await callAdmin({ action: "reconcile_stripe", options }, { client });
      assert.equal(again.status, 200);
      assert.deepEqual([again.body.found, again.body.changed], [0, 0]);
      assert.equal((await ledgerState(sql, userId)).balance, 45n);

      const audit = await auditRows(sql, client);
      assert.deepEqual(
        audit.map((row) => [row.action, row.dry_run, row.reason, row.outcome, Number(row.changed)]),
        [
          ["reconcile_stripe", true, "admin-fix-credits reconcile_stripe", "ok", 0],
          ["reconcile_stripe", false, "missed webhooks", "ok", 1],
          ["reconcile_stripe", false, "admin-fix-credits reconcile_stripe", "ok", 0],
        ],
      );
      // The audit keeps the options in effect, defaults filled in.
      assert.deepEqual(audit[0].params.options.retry, options.retry);
      assert.equal(audit[0].params.options.maxSessions, 0);
      assert.equal(audit[0].params.options.maxEvents, 200);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("reconcile_stripe with Stripe unavailable: 502 stripe_unavailable with the report", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      await setWatermark(sql, 3600);
      stripe.failNext("GET /v1/events", [500, 500, 500, 500]);
      const client = newClient();
      const response = await callAdmin({ action: "reconcile_stripe", options }, { client });
      assert.equal(response.status, 502, JSON.stringify(response.body));
      assert.equal(response.body.code, "stripe_unavailable");
      assert.equal(response.body.action, "reconcile_stripe");
      assert.equal(response.body.result.ok, false);
      assert.equal(response.body.result.limits.stoppedBy, "stripe_unavailable");
      assert.equal(response.body.changed, 0);
      const [row] = await auditRows(sql, client);
      assert.deepEqual([row.outcome, row.http_status, row.error_code], [
        "stripe_unavailable",
        502,
        "stripe_unavailable",
      ]);
    });
  } finally {
    await stripe.close();
  }
});
