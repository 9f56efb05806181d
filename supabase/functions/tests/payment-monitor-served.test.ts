// The payment-monitor function as served behind the gateway (verify_jwt = false: it checks
// the service-role key itself), with the environment npm test gives it: SLACK_WEBHOOK_URL is
// empty, so it sends nothing and leaves every message in the outbox.
import assert from "node:assert/strict";
import { userAccessToken } from "./_helpers/auth.ts";
import { withDb } from "./_helpers/db.ts";
import { stack } from "./_helpers/env.ts";
import { isolateMonitor, outboxRow, raiseTestAlert } from "./_helpers/monitor.ts";

async function post(headers: Record<string, string>) {
  const response = await fetch(stack.functionUrl("payment-monitor"), { method: "POST", headers, body: "{}" });
  return { status: response.status, body: await response.json() };
}

Deno.test("payment-monitor (served) refuses every caller but the service role", async () => {
  const refused: Array<Record<string, string>> = [
    {},
    { authorization: `Bearer ${stack.anonKey}` },
    { authorization: `Bearer ${await userAccessToken(crypto.randomUUID())}` },
    { authorization: `Bearer ${stack.serviceRoleKey}x` },
    { apikey: stack.serviceRoleKey },
  ];
  for (const headers of refused) {
    const { status, body } = await post(headers);
    assert.equal(status, 401, JSON.stringify(headers));
    assert.deepEqual(body, { error: "the service-role key is required as a Bearer token" });
  }
});

Deno.test("payment-monitor (served) without SLACK_WEBHOOK_URL keeps the alerts in the outbox", async () => {
  await withDb(async (sql) => {
    const restore = await isolateMonitor(sql);
    try {
      const fingerprint = await raiseTestAlert(sql, "Served without Slack");
      const { status, body } = await post({ authorization: `Bearer ${stack.serviceRoleKey}` });
      assert.equal(status, 200);
      assert.equal(body.slackConfigured, false);
      assert.equal(body.claimed, 0);
      assert.equal(body.pending, 1);
      const row = await outboxRow(sql, fingerprint);
      assert.deepEqual({ status: row.status, attempts: Number(row.attempts) }, {
        status: "pending",
        attempts: 0,
      });
    } finally {
      await restore();
    }
  });
});
