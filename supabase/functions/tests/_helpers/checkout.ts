// Credit packages, pending recharges and Checkout Session objects for the checkout and
// reconciliation tests. Rows are written directly as postgres (the tables' owner); the code
// under test goes through the gateway.
import { fixture, type StripeEvent, uniqueId } from "./stripe-events.ts";
import type { Sql } from "./db.ts";

// deno-lint-ignore no-explicit-any
type Json = Record<string, any>;

const fixturesDir = new URL("../fixtures/", import.meta.url);

function objectFixture(name: string): Json {
  return JSON.parse(Deno.readTextFileSync(new URL(`${name}.json`, fixturesDir)));
}

export interface TestPackage {
  id: string;
  priceId: string;
  credits: number;
  amountCents: number;
}

export async function createPackage(
  sql: Sql,
  options: { credits?: number; amountCents?: number; active?: boolean } = {},
): Promise<TestPackage> {
  const priceId = uniqueId("price");
  const credits = options.credits ?? 500;
  const amountCents = options.amountCents ?? 499;
  const [row] =
    await sql`insert into public.credit_packages (name, stripe_price_id, credits, amount_cents, active)
    values (${`${credits} credits`}, ${priceId}, ${credits}, ${amountCents}, ${options.active ?? true})
    returning id`;
  return { id: row.id, priceId, credits, amountCents };
}

/** A pending recharge for a new session id, created `ageSeconds` ago. */
export async function insertPendingRecharge(
  sql: Sql,
  userId: string,
  credits: number,
  ageSeconds: number,
): Promise<{ rechargeId: string; sessionId: string }> {
  const sessionId = uniqueId("cs");
  const [row] = await sql`insert into public.credit_recharge
      (user_id, credits, amount_cents, stripe_checkout_session_id, created_at, updated_at)
    values (${userId}, ${credits}, ${credits}, ${sessionId},
      now() - make_interval(secs => ${ageSeconds}), now() - make_interval(secs => ${ageSeconds}))
    returning id`;
  return { rechargeId: row.id, sessionId };
}

export async function rechargeRow(sql: Sql, sessionId: string) {
  const rows = await sql`select id, user_id, status, credits, amount_cents, currency, completed_at,
      stripe_payment_intent_id
    from public.credit_recharge where stripe_checkout_session_id = ${sessionId}`;
  return rows;
}

export interface SessionOptions {
  sessionId: string;
  userId: string;
  credits: number;
  status: "open" | "complete" | "expired";
  paymentStatus: "paid" | "unpaid" | "no_payment_required";
  paymentIntentId?: string | null;
}

/** A Checkout Session as GET /v1/checkout/sessions/:id returns it. */
export function checkoutSession(options: SessionOptions): Json {
  const session = objectFixture("checkout.session");
  Object.assign(session, {
    id: options.sessionId,
    client_reference_id: options.userId,
    amount_subtotal: options.credits,
    amount_total: options.credits,
    status: options.status,
    payment_status: options.paymentStatus,
    payment_intent: options.paymentIntentId ?? null,
    url: options.status === "open" ? `https://checkout.stripe.com/c/pay/${options.sessionId}` : null,
  });
  session.metadata = { ...session.metadata, user_id: options.userId, credits: String(options.credits) };
  return session;
}

export function paymentIntent(id: string, status: string, amount: number): Json {
  return { ...objectFixture("payment_intent"), id, status, amount };
}

/** Sets an event's created time, in seconds before now. */
export function createdAgo(event: StripeEvent, seconds: number): StripeEvent {
  event.created = Math.floor(Date.now() / 1000) - seconds;
  return event;
}

export { fixture };
