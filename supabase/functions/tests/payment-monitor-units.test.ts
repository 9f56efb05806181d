// Pure parts of the payment monitor: the local scheduler's timing (the pg_net job's
// schedule, 1,16,31,46 * * * *) and the Slack rendering of untrusted text.
import assert from "node:assert/strict";
import { DELIVERY_MINUTES, nextDeliveryAt } from "../../../local/scheduler.ts";
import { countsText, escapeMrkdwn, type OutboxMessage, slackMessageFor } from "../payment-monitor/slack.ts";

Deno.test("the local scheduler calls payment-monitor one minute after each monitor run", () => {
  assert.deepEqual(DELIVERY_MINUTES, [1, 16, 31, 46]);
  const at = (iso: string) => nextDeliveryAt(new Date(iso)).toISOString();
  assert.equal(at("2026-11-26T10:00:00.000Z"), "2026-11-26T10:01:00.000Z");
  assert.equal(at("2026-11-26T10:01:00.000Z"), "2026-11-26T10:16:00.000Z", "strictly after now");
  assert.equal(at("2026-11-26T10:15:59.999Z"), "2026-11-26T10:16:00.000Z");
  assert.equal(at("2026-11-26T23:47:30.000Z"), "2026-11-27T00:01:00.000Z", "across midnight");
});

Deno.test("Slack messages escape what the database quotes and stay within Block Kit's limits", () => {
  assert.equal(escapeMrkdwn("<!channel> & <https://x|y>"), "&lt;!channel&gt; &amp; &lt;https://x|y&gt;");
  assert.equal(
    countsText({ orphaned_recharges: 2, failed_webhooks: 0, balance_mismatches: 1 }),
    "1 balance mismatches, 2 orphaned recharges",
  );
  assert.equal(countsText({}), "none");
  const message: OutboxMessage = {
    id: 7,
    claim_token: "t",
    kind: "alert",
    title: "x".repeat(400),
    attempts: 1,
    created_at: "2026-11-26T10:00:00Z",
    body: {
      type: "alert",
      severity: "warning",
      category: "failed_webhooks",
      count: 1,
      rows: [{ id: "evt_1", line: "event evt_1: last error <script>", reason: "failed again" }],
      more_rows: 3,
      run: { id: 5, found: { failed_webhooks: 1 }, repaired: {}, remaining: { failed_webhooks: 1 } },
    },
  };
  const slack = slackMessageFor(message);
  assert.equal(slack.blocks[0].text.text.length, 150);
  assert.ok(slack.blocks[0].text.text.startsWith(":large_orange_circle: "));
  const text = JSON.stringify(slack.blocks);
  assert.ok(text.includes("last error &lt;script&gt;"));
  assert.ok(!text.includes("<script>"));
  assert.ok(text.includes("…and 3 more"));
  assert.ok(text.includes("*Repaired*: none"));
});
