// payment-monitor's handler (the factory the served function uses) against the real database
// through the gateway and a loopback Slack webhook of the test's own: one message per new
// alert, none for a duplicate, a retry after Slack answers 500, never a message twice under
// concurrent deliveries, nothing sent without a URL, and the weekly report as Block Kit.
import assert from "node:assert/strict";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { createPaymentMonitorHandler, type PaymentMonitorDeps } from "../payment-monitor/handler.ts";
import { createUser, withDb } from "./_helpers/db.ts";
import { stack } from "./_helpers/env.ts";
import {
  deliveredTexts,
  isolateMonitor,
  monitorRequest,
  outboxRow,
  raiseTestAlert,
  runMonitor,
  startSlackReceiver,
} from "./_helpers/monitor.ts";

const db = createAdminClient(stack.url, stack.serviceRoleKey);

function handlerFor(slackWebhookUrl: string | null, extra: Partial<PaymentMonitorDeps> = {}) {
  return createPaymentMonitorHandler({
    serviceRoleKey: stack.serviceRoleKey,
    db,
    slackWebhookUrl,
    log: () => {},
    ...extra,
  });
}

async function deliver(handler: (req: Request) => Promise<Response>) {
  const response = await handler(monitorRequest());
  return { status: response.status, body: await response.json() };
}

// deno-lint-ignore no-explicit-any
function blockTexts(message: Record<string, any>): string {
  return JSON.stringify(message.blocks);
}

Deno.test("payment-monitor: one Slack message per new alert, none for a duplicate, one when it changes", async () => {
  await withDb(async (sql) => {
    const restore = await isolateMonitor(sql);
    const slack = startSlackReceiver();
    try {
      await sql`update credit_private.settings set auto_fix_orphaned_recharges = false`;
      const userId = await createUser(sql);
      const [first] = await sql`insert into public.credit_recharge
          (user_id, credits, amount_cents, currency, status, completed_at, stripe_checkout_session_id)
        values (${userId}, 250, 1250, 'usd', 'completed', now(), ${`cs_pm_${crypto.randomUUID()}`}) returning id`;
      await runMonitor(sql);

      const handler = handlerFor(slack.url);
      const one = await deliver(handler);
      assert.equal(one.status, 200);
      assert.deepEqual(
        {
          slackConfigured: one.body.slackConfigured,
          claimed: one.body.claimed,
          delivered: one.body.delivered,
        },
        { slackConfigured: true, claimed: 1, delivered: 1 },
      );
      assert.deepEqual(deliveredTexts(slack), ["Orphaned recharges: 1 could not be repaired"]);
      const message = slack.posts[0].body;
      assert.equal(message.blocks[0].type, "header");
      assert.equal(message.blocks[0].text.text, ":red_circle: Orphaned recharges: 1 could not be repaired");
      const text = blockTexts(message);
      assert.ok(text.includes(`recharge ${first.id}: 250 credits (USD 12.50) of user ${userId}`), text);
      assert.ok(
        text.includes("automatic repair is switched off (settings.auto_fix_orphaned_recharges)"),
        text,
      );
      assert.ok(text.includes("*This run* found: 1 orphaned recharges"), text);
      assert.ok(text.includes("Back-fill its recharge entry"), text);
      const row = await outboxRow(sql, "unrepaired:orphaned_recharges");
      assert.deepEqual({ status: row.status, attempts: Number(row.attempts) }, {
        status: "sent",
        attempts: 1,
      });

      // The same problem at the next run: the alert is deduplicated, nothing is sent.
      await runMonitor(sql);
      const again = await deliver(handler);
      assert.equal(again.body.claimed, 0);
      assert.equal(slack.posts.length, 1);

      // It changes (a second orphan): one more message, saying so.
      await sql`insert into public.credit_recharge
          (user_id, credits, amount_cents, currency, status, completed_at, stripe_checkout_session_id)
        values (${userId}, 10, 50, 'usd', 'completed', now(), ${`cs_pm_${crypto.randomUUID()}`})`;
      await runMonitor(sql);
      const changed = await deliver(handler);
      assert.equal(changed.body.delivered, 1);
      assert.deepEqual(deliveredTexts(slack).slice(1), [
        "Changed: Orphaned recharges: 2 could not be repaired",
      ]);

      // Repaired: the alert resolves, and the message says so.
      await sql`update credit_private.settings set auto_fix_orphaned_recharges = true`;
      const run = await runMonitor(sql);
      assert.equal(run.repaired.orphaned_recharges, 2);
      await deliver(handler);
      assert.deepEqual(deliveredTexts(slack).slice(2), [
        "Resolved: Orphaned recharges: 2 could not be repaired",
      ]);
      assert.equal(slack.posts[2].body.blocks[0].text.text.startsWith(":white_check_mark: Resolved:"), true);
      assert.ok(blockTexts(slack.posts[2].body).includes("*Repaired*: 2 orphaned recharges"));
    } finally {
      await slack.close();
      await restore();
    }
  });
});

Deno.test("payment-monitor: a message Slack refused is retried later, and sent once", async () => {
  await withDb(async (sql) => {
    const restore = await isolateMonitor(sql);
    const slack = startSlackReceiver();
    try {
      const fingerprint = await raiseTestAlert(sql, "Retry me");
      slack.failNext([500]);
      const handler = handlerFor(slack.url);

      const refused = await deliver(handler);
      assert.equal(refused.status, 502);
      assert.deepEqual({
        claimed: refused.body.claimed,
        delivered: refused.body.delivered,
        failed: refused.body.failed,
      }, {
        claimed: 1,
        delivered: 0,
        failed: 1,
      });
      let row = await outboxRow(sql, fingerprint);
      assert.deepEqual(
        {
          status: row.status,
          attempts: Number(row.attempts),
          error: row.last_error,
          claimed: row.claimed_until,
        },
        { status: "pending", attempts: 1, error: "Slack answered 500: internal_error", claimed: null },
      );

      // Not due yet: an immediate second call sends nothing.
      const early = await deliver(handler);
      assert.equal(early.body.claimed, 0);
      assert.equal(slack.posts.length, 1);

      // Once due (its backoff faked by moving the stored time), it is sent, once.
      await sql`update credit_private.monitor_outbox set next_attempt_at = now() where id = ${row.id}`;
      const retried = await deliver(handler);
      assert.equal(retried.status, 200);
      assert.equal(retried.body.delivered, 1);
      assert.deepEqual(slack.posts.map((post) => [post.body.text, post.status]), [["Retry me", 500], [
        "Retry me",
        200,
      ]]);
      row = await outboxRow(sql, fingerprint);
      assert.deepEqual({ status: row.status, attempts: Number(row.attempts) }, {
        status: "sent",
        attempts: 2,
      });
      assert.equal((await deliver(handler)).body.claimed, 0);
      assert.equal(slack.posts.length, 2);
    } finally {
      await slack.close();
      await restore();
    }
  });
});

Deno.test("payment-monitor: after a failure the rest of the batch waits for a later call, unsent", async () => {
  await withDb(async (sql) => {
    const restore = await isolateMonitor(sql);
    const slack = startSlackReceiver();
    try {
      const first = await raiseTestAlert(sql, "Batch one");
      const second = await raiseTestAlert(sql, "Batch two");
      slack.failNext([503]);
      const result = await deliver(handlerFor(slack.url));
      assert.deepEqual({ claimed: result.body.claimed, failed: result.body.failed }, {
        claimed: 2,
        failed: 2,
      });
      assert.equal(slack.posts.length, 1, "Slack is not hammered once it failed");
      assert.equal((await outboxRow(sql, first)).last_error, "Slack answered 503: internal_error");
      assert.match(
        String((await outboxRow(sql, second)).last_error),
        /^not sent: an earlier message of this delivery failed/,
      );
    } finally {
      await slack.close();
      await restore();
    }
  });
});

Deno.test("payment-monitor: concurrent deliveries never send a message twice", async () => {
  await withDb(async (sql) => {
    const restore = await isolateMonitor(sql);
    const slack = startSlackReceiver();
    try {
      const summaries = Array.from({ length: 6 }, (_, i) => `Concurrent ${i}`);
      for (const summary of summaries) await raiseTestAlert(sql, summary);
      slack.delayMs = 150;
      const handler = handlerFor(slack.url, { batchSize: 2 });
      const results = await Promise.all([1, 2, 3, 4].map(() => deliver(handler)));
      assert.equal(results.reduce((sum, result) => sum + result.body.delivered, 0), 6);
      assert.deepEqual(deliveredTexts(slack).sort(), summaries);
      const [row] =
        await sql`select count(*)::int as pending from credit_private.monitor_outbox where status = 'pending'`;
      assert.equal(row.pending, 0);
    } finally {
      await slack.close();
      await restore();
    }
  });
});

Deno.test("payment-monitor: without a Slack URL nothing is sent and the alerts stay in the outbox", async () => {
  await withDb(async (sql) => {
    const restore = await isolateMonitor(sql);
    const slack = startSlackReceiver();
    try {
      const fingerprint = await raiseTestAlert(sql, "Kept in the outbox");
      const result = await deliver(handlerFor(null));
      assert.equal(result.status, 200);
      assert.deepEqual(result.body, {
        slackConfigured: false,
        claimed: 0,
        delivered: 0,
        failed: 0,
        pending: 1,
        openAlerts: 1,
        note: "SLACK_WEBHOOK_URL is not set: messages stay in credit_private.monitor_pending_messages",
      });
      assert.equal(slack.posts.length, 0);
      const row = await outboxRow(sql, fingerprint);
      assert.deepEqual({ status: row.status, attempts: Number(row.attempts), claimed: row.claimed_until }, {
        status: "pending",
        attempts: 0,
        claimed: null,
      });
      const [visible] =
        await sql`select title from credit_private.monitor_pending_messages where fingerprint = ${fingerprint}`;
      assert.equal(visible.title, "Kept in the outbox");
    } finally {
      await slack.close();
      await restore();
    }
  });
});

Deno.test("payment-monitor: the weekly report goes to Slack as Block Kit with its figures", async () => {
  await withDb(async (sql) => {
    const restore = await isolateMonitor(sql);
    const slack = startSlackReceiver();
    try {
      // A week long past, produced on demand (the hourly job does it when it is due).
      await sql`delete from credit_private.monitor_weekly_report where week_start = '2020-01-06' and time_zone = 'UTC'`;
      const [zone] = await sql`select report_time_zone from credit_private.settings`;
      await sql`update credit_private.settings set report_time_zone = 'UTC'`;
      const [produced] = await sql`select credit_private.produce_weekly_report('2020-01-06') as id`;
      await sql`update credit_private.settings set report_time_zone = ${zone.report_time_zone}`;

      const result = await deliver(handlerFor(slack.url));
      assert.equal(result.body.delivered, 1);
      const message = slack.posts[0].body;
      assert.match(message.text, /^Weekly credits report 2020-01-06 to 2020-01-12 \(UTC\): /);
      assert.equal(
        message.blocks[0].text.text,
        ":bar_chart: Weekly credits report 2020-01-06 to 2020-01-12 (UTC)",
      );
      const text = blockTexts(message);
      for (
        const label of [
          "Recharges",
          "Money",
          "Credits spent",
          "Refunds",
          "Disputes",
          "Payment to credit",
          "Webhooks",
        ]
      ) {
        assert.ok(text.includes(`*${label}*`), label);
      }
      assert.ok(text.includes("0 (0 credits)"), text);
      assert.ok(text.includes(`weekly report ${produced.id}`), text);
      await sql`delete from credit_private.monitor_weekly_report where id = ${produced.id}`;
    } finally {
      await slack.close();
      await restore();
    }
  });
});

Deno.test("payment-monitor: only the service-role key, only POST", async () => {
  const slack = startSlackReceiver();
  try {
    const handler = handlerFor(slack.url);
    for (const key of [null, stack.anonKey, `${stack.serviceRoleKey}x`]) {
      const response = await handler(monitorRequest("POST", key));
      assert.equal(response.status, 401);
      assert.deepEqual(await response.json(), {
        error: "the service-role key is required as a Bearer token",
      });
    }
    const get = await handler(monitorRequest("GET"));
    assert.equal(get.status, 405);
    await get.body?.cancel();
    assert.equal(slack.posts.length, 0);
  } finally {
    await slack.close();
  }
});
