// Delivers the monitor's outbox (alerts and weekly reports the database queued) to Slack.
// pg_cron calls it through pg_net a minute after each monitor run (npm start's scheduler
// does locally); operators may call it too. The gateway does not check a JWT here
// (verify_jwt = false): only the service-role key is accepted, compared in constant time.
//
// Each call claims due messages with a lease (so concurrent calls split them and never send
// one twice), posts them one by one, and reports each outcome with its claim token: sent, or
// failed and due again later with backoff. After the first failure it stops posting and
// hands the rest back for a later call. Without SLACK_WEBHOOK_URL it sends nothing and
// claims nothing: the messages stay in credit_private.monitor_pending_messages.
import type { SupabaseClient } from "@supabase/supabase-js";
import { hasBearerSecret } from "../_shared/bearer-auth.ts";
import { jsonError } from "../_shared/http.ts";
import { callRpc } from "../_shared/rpc.ts";
import { type OutboxMessage, postToSlack, slackMessageFor, type SlackOutcome } from "./slack.ts";

export interface PaymentMonitorDeps {
  serviceRoleKey: string;
  db: SupabaseClient;
  /** null: Slack is not configured, messages stay in the outbox. */
  slackWebhookUrl: string | null;
  fetch?: typeof fetch;
  log?: (message: string) => void;
  /** Messages claimed per call (default 10). */
  batchSize?: number;
  /** How long a claim holds its messages (default 300 s): longer than batchSize posts can take. */
  leaseSeconds?: number;
  /** Per Slack request (default 10 s). */
  slackTimeoutMs?: number;
}

interface MonitorStatus {
  pending_messages: number;
  failing_messages: number;
  open_alerts: number;
  critical_alerts: number;
}

export interface DeliveryReport {
  slackConfigured: boolean;
  claimed: number;
  delivered: number;
  failed: number;
  /** Messages still pending after this call (waiting for a retry, or for a URL). */
  pending: number;
  openAlerts: number;
  note?: string;
}

export function createPaymentMonitorHandler(deps: PaymentMonitorDeps): (req: Request) => Promise<Response> {
  const log = deps.log ?? console.error;
  const fetchFn = deps.fetch ?? fetch;
  const batchSize = deps.batchSize ?? 10;
  const leaseSeconds = deps.leaseSeconds ?? 300;
  const slackTimeoutMs = deps.slackTimeoutMs ?? 10_000;

  async function deliver(webhookUrl: string): Promise<Omit<DeliveryReport, "pending" | "openAlerts">> {
    const messages = await callRpc<OutboxMessage[]>(deps.db, "claim_monitor_messages", {
      max_messages: batchSize,
      lease_seconds: leaseSeconds,
    });
    let delivered = 0;
    let failed = 0;
    let firstError: string | null = null;
    for (const message of messages) {
      const outcome: SlackOutcome = firstError === null
        ? await postToSlack(fetchFn, webhookUrl, slackMessageFor(message), slackTimeoutMs)
        : { ok: false, error: `not sent: an earlier message of this delivery failed (${firstError})` };
      if (outcome.ok) {
        delivered++;
      } else {
        failed++;
        firstError ??= outcome.error;
        log(`payment-monitor: message ${message.id} not delivered: ${outcome.error}`);
      }
      await callRpc(deps.db, "complete_monitor_message", {
        message_id: message.id,
        claim_token: message.claim_token,
        delivered: outcome.ok,
        error: outcome.ok ? null : outcome.error,
      });
    }
    return { slackConfigured: true, claimed: messages.length, delivered, failed };
  }

  return async (req: Request): Promise<Response> => {
    if (!(await hasBearerSecret(req, deps.serviceRoleKey))) {
      return jsonError(401, "the service-role key is required as a Bearer token");
    }
    if (req.method !== "POST") return jsonError(405, `method ${req.method} not allowed: use POST`);
    await req.body?.cancel();

    try {
      const result = deps.slackWebhookUrl
        ? await deliver(deps.slackWebhookUrl)
        : { slackConfigured: false, claimed: 0, delivered: 0, failed: 0 };
      const status = await callRpc<MonitorStatus>(deps.db, "get_payment_monitor_status", {});
      const report: DeliveryReport = {
        ...result,
        pending: Number(status.pending_messages),
        openAlerts: Number(status.open_alerts),
      };
      if (!deps.slackWebhookUrl) {
        report.note =
          "SLACK_WEBHOOK_URL is not set: messages stay in credit_private.monitor_pending_messages";
      }
      return Response.json(report, { status: report.failed > 0 ? 502 : 200 });
    } catch (err) {
      log(`payment-monitor: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      return jsonError(500, "the monitor's outbox could not be read or updated; see the function logs");
    }
  };
}
