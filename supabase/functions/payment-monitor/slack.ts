// Turns an outbox message (an alert or a weekly report, as the database queued it) into a
// Slack Block Kit message, and posts it to an incoming webhook. Only the message's own data
// is shown; the webhook URL is a secret and never appears in an error.

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

export interface OutboxMessage {
  id: number;
  claim_token: string;
  kind: "alert" | "changed" | "reminder" | "resolved" | "weekly_report";
  title: string;
  body: Json;
  attempts: number;
  created_at: string;
}

export interface SlackMessage {
  text: string;
  blocks: Json[];
}

/** Slack's limits: header text 150 characters, section text 3000, a field 2000. */
function cut(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Escapes the three characters mrkdwn gives a meaning to. */
export function escapeMrkdwn(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
}

function section(text: string): Json {
  return { type: "section", text: { type: "mrkdwn", text: cut(text, 3000) } };
}

function fields(pairs: Array<[string, string]>): Json {
  return {
    type: "section",
    fields: pairs.slice(0, 10).map(([label, value]) => ({
      type: "mrkdwn",
      text: cut(`*${escapeMrkdwn(label)}*\n${escapeMrkdwn(value)}`, 2000),
    })),
  };
}

function header(text: string): Json {
  return { type: "header", text: { type: "plain_text", text: cut(text, 150), emoji: true } };
}

function context(text: string): Json {
  return { type: "context", elements: [{ type: "mrkdwn", text: cut(text, 3000) }] };
}

/** "2 orphaned recharges, 1 failed webhooks" from {category: count}; "none" when all are 0. */
export function countsText(counts: Json | null | undefined): string {
  const parts = Object.entries(counts ?? {})
    .filter(([, count]) => Number(count) !== 0)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([category, count]) => `${count} ${category.replaceAll("_", " ")}`);
  return parts.length > 0 ? parts.join(", ") : "none";
}

function alertIcon(body: Json): string {
  if (body.type === "resolved") return ":white_check_mark:";
  return body.severity === "critical" ? ":red_circle:" : ":large_orange_circle:";
}

function alertMessage(message: OutboxMessage): SlackMessage {
  const body = message.body;
  const blocks: Json[] = [header(`${alertIcon(body)} ${message.title}`)];

  const facts: Array<[string, string]> = [
    ["Category", String(body.category ?? "monitor").replaceAll("_", " ")],
    ["Severity", String(body.severity ?? "warning")],
  ];
  if (body.type !== "resolved") facts.push(["Count", String(body.count ?? 0)]);
  if (body.first_seen_at) facts.push(["Open since", String(body.first_seen_at)]);
  if (body.resolved_at) facts.push(["Resolved at", String(body.resolved_at)]);
  if (body.occurrences) facts.push(["Seen by", `${body.occurrences} run(s)`]);
  blocks.push(fields(facts));

  const rows: Json[] = Array.isArray(body.rows) ? body.rows : [];
  if (rows.length > 0) {
    const lines = rows.map((row) =>
      `• ${escapeMrkdwn(String(row.line ?? row.id))}${
        row.reason ? `\n    _${escapeMrkdwn(String(row.reason))}_` : ""
      }`
    );
    if (Number(body.more_rows) > 0) lines.push(`…and ${body.more_rows} more`);
    blocks.push(section(`*Worst rows*\n${lines.join("\n")}`));
  }

  const run: Json = body.run ?? {};
  blocks.push(section(
    `*This run* found: ${escapeMrkdwn(countsText(run.found))}\n` +
      `*Repaired*: ${escapeMrkdwn(countsText(run.repaired))}\n` +
      `*Left*: ${escapeMrkdwn(countsText(run.remaining))}`,
  ));

  if (body.suggested_action) {
    blocks.push(section(`*What to do*\n${escapeMrkdwn(String(body.suggested_action))}`));
  }
  blocks.push(context(escapeMrkdwn(
    `payment monitor · run ${run.id ?? "?"} · ${body.fingerprint ?? ""} · message ${message.id}`,
  )));
  return { text: message.title, blocks };
}

function seconds(value: unknown): string {
  return value === null || value === undefined ? "n/a" : `${Number(value)} s`;
}

function money(byCurrency: Json[] | undefined): string {
  const parts = (byCurrency ?? []).map((c) =>
    `${String(c.currency).toUpperCase()} ${(Number(c.amount_cents) / 100).toFixed(2)} (${c.count})`
  );
  return parts.length > 0 ? parts.join(" · ") : "none";
}

function reportMessage(message: OutboxMessage): SlackMessage {
  const report: Json = message.body.report ?? {};
  const week: Json = report.week ?? {};
  const recharges: Json = report.recharges ?? {};
  const latency: Json = report.payment_to_credit ?? {};
  const webhooks: Json = report.webhooks ?? {};
  const disputes: Json = report.disputes ?? {};
  const refunds: Json = report.refunds ?? {};
  const repairs: Json = report.inconsistencies?.repairs ?? {};
  const monitor: Json = report.inconsistencies?.monitor ?? {};
  const open: Json = report.open_problems ?? {};
  const verdictIcon = String(report.verdict ?? "").startsWith("Healthy")
    ? ":large_green_circle:"
    : ":red_circle:";

  const blocks: Json[] = [
    header(`:bar_chart: Weekly credits report ${week.start} to ${week.end} (${week.time_zone})`),
    section(`${verdictIcon} *${escapeMrkdwn(String(report.verdict ?? ""))}*`),
    fields([
      ["Recharges", `${recharges.count ?? 0} (${recharges.credits ?? 0} credits)`],
      ["Money", money(recharges.by_currency)],
      ["Credits spent", `${report.credits_spent ?? 0} in ${report.spends ?? 0} spend(s)`],
      ["Refunds", `${refunds.count ?? 0} (${refunds.credits ?? 0} credits)`],
      [
        "Disputes",
        `${disputes.holds ?? 0} held (${disputes.credits_held ?? 0} credits), ${
          disputes.releases ?? 0
        } released (${disputes.credits_restored ?? 0})`,
      ],
      [
        "Payment to credit",
        `median ${seconds(latency.median_seconds)} · p95 ${seconds(latency.p95_seconds)} · max ${
          seconds(latency.max_seconds)
        } (${latency.measured ?? 0} measured)`,
      ],
      [
        "Webhooks",
        `${webhooks.events ?? 0} events, ${webhooks.failed_events ?? 0} failed (${
          (Number(webhooks.failure_rate ?? 0) * 100).toFixed(2)
        }%), ${webhooks.retries ?? 0} retries (${webhooks.retries_succeeded ?? 0} ok), ${
          webhooks.still_failing ?? 0
        } still failing`,
      ],
      [
        "Repairs",
        `${repairs.count ?? 0} (${repairs.by_monitor ?? 0} by the monitor, ${
          repairs.by_people ?? 0
        } by people)`,
      ],
    ]),
    section(
      `*Found by the monitor* (${monitor.runs ?? 0} runs, ${monitor.failed_runs ?? 0} failed): ${
        escapeMrkdwn(countsText(monitor.found))
      }\n*Repaired*: ${escapeMrkdwn(countsText(repairs.by_category))}\n*Open now*: ${
        escapeMrkdwn(countsText(open.diagnosis))
      }`,
    ),
  ];
  const alerts: Json[] = Array.isArray(open.alerts) ? open.alerts : [];
  if (alerts.length > 0) {
    blocks.push(section(
      `*Open alerts*\n${alerts.slice(0, 10).map((a) => `• ${escapeMrkdwn(String(a.summary))}`).join("\n")}`,
    ));
  }
  blocks.push(context(escapeMrkdwn(`payment monitor · weekly report ${message.body.report_id ?? ""}`)));
  return { text: message.title, blocks };
}

export function slackMessageFor(message: OutboxMessage): SlackMessage {
  return message.kind === "weekly_report" ? reportMessage(message) : alertMessage(message);
}

export type SlackOutcome = { ok: true } | { ok: false; error: string };

/** Posts one message; any answer but 2xx, a timeout or a network error is a failure. */
export async function postToSlack(
  fetchFn: typeof fetch,
  webhookUrl: string,
  message: SlackMessage,
  timeoutMs: number,
): Promise<SlackOutcome> {
  try {
    const response = await fetchFn(webhookUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(message),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    if (response.ok) return { ok: true };
    return { ok: false, error: `Slack answered ${response.status}: ${cut(text.trim(), 200)}` };
  } catch (err) {
    const name = err instanceof Error ? err.name : "Error";
    return {
      ok: false,
      error: name === "TimeoutError"
        ? `Slack did not answer within ${timeoutMs} ms`
        : `Slack unreachable (${name})`,
    };
  }
}
