// Security sweep (issue 7): the endpoints that take requests from outside, fed a few thousand
// generated malformed requests (a seeded generator, so a failure is replayed by its seed and
// index): random bytes, truncated JSON, huge headers, wrong content types, valid signatures over
// garbage, wrong methods. None may be answered 5xx, and none may write to the ledger or inbox.
// The admin endpoint is swept only where it is installed (supabase/functions/admin-fix-credits/).
import assert from "node:assert/strict";
import { type Sql, withDb } from "./_helpers/db.ts";
import { stack } from "./_helpers/env.ts";
import { runPool, seededRandom } from "./_helpers/concurrency.ts";
import { checkoutEvent, signatureHeader } from "./_helpers/stripe-events.ts";

const SEED = 7;
const WEBHOOK_REQUESTS = 2500;
const ADMIN_REQUESTS = 1200;

interface Probe {
  index: number;
  kind: string;
  method: string;
  headers: Record<string, string>;
  body?: Uint8Array<ArrayBuffer> | string;
}

interface Answer {
  probe: Probe;
  status: number;
  error?: string;
}

/** Everything a malformed request could have written that matters: ledger, inbox, repairs. */
async function writableCounts(sql: Sql): Promise<Record<string, number>> {
  const [row] = await sql`select
    (select count(*) from credit_private.stripe_webhook_event)::int as inbox,
    (select count(*) from public.credit_recharge)::int as recharges,
    (select count(*) from public.credit_transaction)::int as transactions,
    (select count(*) from public.user_credit_balance)::int as balances,
    (select count(*) from credit_private.repair_log)::int as repair_log`;
  return { ...row };
}

class Fuzz {
  private readonly random: () => number;
  constructor(seed: number) {
    this.random = seededRandom(seed);
  }
  int(min: number, max: number): number {
    return min + Math.floor(this.random() * (max - min + 1));
  }
  chance(p: number): boolean {
    return this.random() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)];
  }
  bytes(n: number): Uint8Array<ArrayBuffer> {
    return Uint8Array.from({ length: n }, () => this.int(0, 255));
  }
  text(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789 {}[]":,\\\u00e9\u2603\u0000'): string {
    return Array.from({ length: n }, () => alphabet[this.int(0, alphabet.length - 1)]).join("");
  }
  /** JSON that is not a Stripe event: never all of a string id, a string type and an object data.object. */
  notAnEvent(): unknown {
    const options: Array<() => unknown> = [
      () => null,
      () => this.int(-1e9, 1e9),
      () => this.text(this.int(0, 40)),
      () => [],
      () => [{ id: "evt_x", type: "checkout.session.completed" }],
      () => ({}),
      () => ({ id: `evt_fuzz_${this.int(0, 1e9)}` }),
      () => ({ type: "checkout.session.completed", data: { object: {} } }),
      () => ({ id: `evt_fuzz_${this.int(0, 1e9)}`, type: "checkout.session.completed" }),
      () => ({ id: `evt_fuzz_${this.int(0, 1e9)}`, type: "checkout.session.completed", data: null }),
      () => ({ id: `evt_fuzz_${this.int(0, 1e9)}`, type: "charge.refunded", data: { object: [1, 2] } }),
      () => ({ id: this.int(1, 100), type: "checkout.session.completed", data: { object: {} } }),
      () => ({ id: "", type: "checkout.session.completed", data: { object: {} } }),
      () => ({ id: `evt_fuzz_${this.int(0, 1e9)}`, type: "", data: { object: {} } }),
      () => ({ id: `evt_fuzz_${this.int(0, 1e9)}`, type: ["x"], data: { object: {} } }),
      () => {
        let nested: unknown = {};
        for (let i = 0; i < this.int(50, 400); i++) nested = { data: nested };
        return nested;
      },
    ];
    return this.pick(options)();
  }
}

/** What a header value may hold (fetch refuses control characters and non-Latin-1). */
const PRINTABLE = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)).join("").trim();
const METHODS_WITHOUT_POST = ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];
const CONTENT_TYPES = [
  "application/json",
  "text/plain",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/octet-stream",
  "application/json; charset=utf-16",
  "",
];

/** A genuine event, so that truncations and re-signings start from something real. */
function realPayload(): string {
  return JSON.stringify(
    checkoutEvent("checkout.session.completed", {
      userId: "00000000-0000-4000-8000-000000000000",
      credits: 5,
    }),
  );
}

async function webhookProbe(fuzz: Fuzz, index: number): Promise<Probe> {
  const withType = (headers: Record<string, string>) => {
    const type = fuzz.pick(CONTENT_TYPES);
    return type === "" ? headers : { "content-type": type, ...headers };
  };
  switch (fuzz.int(0, 9)) {
    case 0: {
      const body = fuzz.bytes(fuzz.int(0, 4096));
      const signed = fuzz.chance(0.5);
      return {
        index,
        kind: signed ? "random bytes, signed" : "random bytes",
        method: "POST",
        headers: withType(
          signed
            ? { "stripe-signature": await signatureHeader(new TextDecoder().decode(body)) }
            : { "stripe-signature": fuzz.text(fuzz.int(0, 80), PRINTABLE) },
        ),
        body,
      };
    }
    case 1: {
      const payload = realPayload();
      const body = payload.slice(0, fuzz.int(0, payload.length - 1));
      return {
        index,
        kind: "truncated JSON, signed",
        method: "POST",
        headers: withType({ "stripe-signature": await signatureHeader(body) }),
        body,
      };
    }
    case 2: {
      // The whole genuine event, signed, then truncated after signing.
      const payload = realPayload();
      return {
        index,
        kind: "truncated after signing",
        method: "POST",
        headers: withType({ "stripe-signature": await signatureHeader(payload) }),
        body: payload.slice(0, fuzz.int(1, payload.length - 1)),
      };
    }
    case 3: {
      const body = JSON.stringify(fuzz.notAnEvent());
      return {
        index,
        kind: "valid signature over JSON that is not an event",
        method: "POST",
        headers: withType({ "stripe-signature": await signatureHeader(body) }),
        body,
      };
    }
    case 4: {
      const body = fuzz.text(fuzz.int(0, 2000));
      return {
        index,
        kind: "valid signature over text",
        method: "POST",
        headers: withType({ "stripe-signature": await signatureHeader(body) }),
        body,
      };
    }
    case 5: {
      // Huge or many headers, over a genuine body whose signature is garbage.
      const headers: Record<string, string> = {
        "stripe-signature": `t=1,v1=${fuzz.text(fuzz.int(4000, 12000), "0123456789abcdef")}`,
      };
      for (let i = 0; i < fuzz.int(0, 60); i++) {
        headers[`x-fuzz-${i}`] = fuzz.text(fuzz.int(1, 200), "abcdef0123456789");
      }
      return { index, kind: "huge headers", method: "POST", headers: withType(headers), body: realPayload() };
    }
    case 6: {
      const payload = realPayload();
      const t = Math.floor(Date.now() / 1000);
      const header = fuzz.pick([
        "",
        "t=",
        `t=${t}`,
        `v1=${"0".repeat(64)}`,
        `t=${t},v1=`,
        `t=abc,v1=${"a".repeat(64)}`,
        `t=${t},t=${t},v1=${"b".repeat(64)}`,
        `t=${t + 86_400},v1=${"c".repeat(64)}`,
        `t=-1,v1=${"d".repeat(64)}`,
        `t=${t},v0=${"e".repeat(64)}`,
        ",,,,=,=",
      ]);
      return {
        index,
        kind: "malformed signature header",
        method: "POST",
        headers: withType({ "stripe-signature": header }),
        body: payload,
      };
    }
    case 7: {
      // A genuine event signed with another secret, or stale.
      const payload = realPayload();
      const stale = fuzz.chance(0.5);
      const header = stale
        ? await signatureHeader(payload, Math.floor(Date.now() / 1000) - fuzz.int(301, 100_000))
        : (await signatureHeader(payload)).replace(/v1=[0-9a-f]+/, `v1=${fuzz.text(64, "0123456789abcdef")}`);
      return {
        index,
        kind: stale ? "stale signature" : "wrong signature",
        method: "POST",
        headers: withType({ "stripe-signature": header }),
        body: payload,
      };
    }
    case 8: {
      const payload = realPayload();
      const method = fuzz.pick(METHODS_WITHOUT_POST);
      return {
        index,
        kind: `method ${method}`,
        method,
        headers: { "content-type": "application/json", "stripe-signature": await signatureHeader(payload) },
        body: method === "GET" || method === "HEAD" ? undefined : payload,
      };
    }
    default: {
      // No signature at all, any body.
      return {
        index,
        kind: "no signature",
        method: "POST",
        headers: withType({}),
        body: fuzz.chance(0.5) ? realPayload() : fuzz.bytes(fuzz.int(0, 512)),
      };
    }
  }
}

function adminProbe(fuzz: Fuzz, index: number, key: string): Probe {
  // Each request from its own documentation address, so the failure counter of the other
  // tests' client (127.0.0.1) is untouched; refusals from it still count per address.
  const client = `203.0.113.${fuzz.int(1, 254)}`;
  const auth = fuzz.pick([
    () => ({}),
    () => ({ authorization: `Bearer ${fuzz.text(fuzz.int(1, 80), "abcdef0123456789")}` }),
    () => ({ authorization: `Bearer ${stack.anonKey}` }),
    () => ({ authorization: `Bearer ${stack.serviceRoleKey}` }),
    () => ({ authorization: `Basic ${btoa(`admin:${key}`)}` }),
    () => ({ authorization: `Bearer ${key}x` }),
    () => ({ authorization: `Bearer ${"k".repeat(fuzz.int(600, 9000))}` }),
    () => ({ authorization: `Bearer ${key}` }),
    () => ({ authorization: `Bearer ${key}` }),
    () => ({ authorization: `Bearer ${key}` }),
  ])();
  const bogus = { torture_fuzz: fuzz.int(0, 1e6) };
  const bodies: Array<() => Uint8Array<ArrayBuffer> | string> = [
    () => fuzz.bytes(fuzz.int(0, 2048)),
    () => JSON.stringify({ action: "fix_all", dryRun: false }).slice(0, fuzz.int(0, 20)),
    () => JSON.stringify(fuzz.notAnEvent()),
    () => JSON.stringify({ action: fuzz.text(fuzz.int(0, 30)), dryRun: false }),
    () => JSON.stringify({ action: "diagnose", maxRows: fuzz.pick([-1, 10_001, 1.5, "10", null]) }),
    () =>
      JSON.stringify({
        action: "fix_specific_recharge",
        rechargeId: fuzz.text(fuzz.int(0, 40)),
        dryRun: false,
      }),
    () => JSON.stringify({ action: "recalculate_balance", userId: fuzz.int(0, 10), dryRun: false }),
    () =>
      JSON.stringify({
        action: "retry_failed_webhooks",
        eventId: `not_an_event_${fuzz.int(0, 99)}`,
        dryRun: false,
      }),
    () => JSON.stringify({ action: "fix_all", dryRun: fuzz.pick(["false", 0, null, "yes"]) }),
    () => JSON.stringify({ action: "fix_all", dryRun: false, ...bogus }),
    () =>
      JSON.stringify({
        action: "reconcile_stripe",
        dryRun: false,
        options: fuzz.pick([[], "x", { maxEvents: -5 }]),
      }),
    () => JSON.stringify({ action: "fix_all", dryRun: false, reason: "r".repeat(fuzz.int(501, 3000)) }),
    () => "x".repeat(fuzz.int(16 * 1024 + 1, 40 * 1024)),
  ];
  const method = fuzz.chance(0.12) ? fuzz.pick(METHODS_WITHOUT_POST) : "POST";
  const type = fuzz.pick(CONTENT_TYPES);
  return {
    index,
    kind: `admin ${method}`,
    method,
    headers: { "x-forwarded-for": client, ...(type === "" ? {} : { "content-type": type }), ...auth },
    body: method === "GET" || method === "HEAD" ? undefined : fuzz.pick(bodies)(),
  };
}

async function send(url: string, probe: Probe): Promise<Answer> {
  try {
    const response = await fetch(url, { method: probe.method, headers: probe.headers, body: probe.body });
    await response.body?.cancel();
    return { probe, status: response.status };
  } catch (err) {
    return {
      probe,
      status: 0,
      error: err instanceof Error ? `${err.message} ${err.cause ?? ""}` : String(err),
    };
  }
}

function describe(answer: Answer): string {
  const body = answer.probe.body;
  const preview = typeof body === "string" ? body.slice(0, 80) : body ? `${body.length} bytes` : "no body";
  return `#${answer.probe.index} ${answer.probe.kind} -> ${answer.status}${
    answer.error ? ` (${answer.error})` : ""
  }: ${JSON.stringify(preview)}`;
}

async function sweep(url: string, probes: Probe[]): Promise<Answer[]> {
  return await runPool(probes.map((probe) => () => send(url, probe)), 16);
}

/** What went wrong: 5xx or unanswered requests (by kind, the first ten shown) and rows written. */
function problems(
  answers: Answer[],
  before: Record<string, number>,
  after: Record<string, number>,
): string[] {
  const found: string[] = [];
  const bad = answers.filter((a) => a.status === 0 || a.status >= 500);
  if (bad.length > 0) {
    const byKind = new Map<string, number>();
    for (const a of bad) byKind.set(a.probe.kind, (byKind.get(a.probe.kind) ?? 0) + 1);
    found.push(
      `${bad.length} of ${answers.length} got a 5xx or no answer (seed ${SEED}), by kind: ${
        JSON.stringify(Object.fromEntries(byKind))
      }`,
      ...bad.slice(0, 10).map(describe),
    );
  }
  // Not refused either: a 2xx or 3xx to a malformed request.
  const accepted = answers.filter((a) => a.status > 0 && a.status < 400);
  if (accepted.length > 0) {
    found.push(`${accepted.length} accepted (not a 4xx)`, ...accepted.slice(0, 10).map(describe));
  }
  for (const [table, count] of Object.entries(after)) {
    if (count !== before[table]) found.push(`${table}: ${count - before[table]} rows written`);
  }
  return found;
}

Deno.test(`security: ${WEBHOOK_REQUESTS} malformed webhook requests: no 5xx, nothing written`, async () => {
  const fuzz = new Fuzz(SEED);
  const probes: Probe[] = [];
  for (let i = 0; i < WEBHOOK_REQUESTS; i++) probes.push(await webhookProbe(fuzz, i));
  await withDb(async (sql) => {
    const before = await writableCounts(sql);
    const answers = await sweep(stack.functionUrl("stripe-webhook"), probes);
    assert.deepEqual(problems(answers, before, await writableCounts(sql)), []);
  });
});

const adminInstalled = (() => {
  try {
    return Deno.statSync(new URL("../admin-fix-credits/", import.meta.url)).isDirectory;
  } catch {
    return false;
  }
})();

Deno.test({
  name: `security: ${ADMIN_REQUESTS} malformed admin requests: no 5xx, nothing written`,
  ignore: !adminInstalled,
  fn: async () => {
    const key = Deno.env.get("ADMIN_API_KEY");
    assert.ok(key, "ADMIN_API_KEY is set by npm test");
    const fuzz = new Fuzz(SEED + 1);
    const probes = Array.from({ length: ADMIN_REQUESTS }, (_, i) => adminProbe(fuzz, i, key));
    await withDb(async (sql) => {
      // Audit and failed-attempt rows are written on purpose; the ledger, inbox and repair log not.
      const before = await writableCounts(sql);
      const answers = await sweep(stack.functionUrl("admin-fix-credits"), probes);
      assert.deepEqual(problems(answers, before, await writableCounts(sql)), []);
    });
  },
});
