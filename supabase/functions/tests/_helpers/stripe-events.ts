// Stripe events for the tests: the JSON fixtures (shaped like Stripe's real payloads) given
// fresh ids, signed the way Stripe signs them, and delivered to the webhook over HTTP.
import Stripe from "stripe";
import { stack } from "./env.ts";

const stripe = new Stripe("sk_test_unused", { httpClient: Stripe.createFetchHttpClient() });
const cryptoProvider = Stripe.createSubtleCryptoProvider();
const fixturesDir = new URL("../fixtures/", import.meta.url);

// deno-lint-ignore no-explicit-any
export type StripeEvent = { id: string; type: string; created: number; data: { object: any } };

export function fixture(type: string): StripeEvent {
  return JSON.parse(Deno.readTextFileSync(new URL(`${type}.json`, fixturesDir)));
}

export function uniqueId(prefix: string): string {
  return `${prefix}_test_${crypto.randomUUID().replaceAll("-", "")}`;
}

export interface CheckoutOptions {
  userId: string;
  credits: number;
  amountCents?: number;
  sessionId?: string;
  paymentIntentId?: string;
  paymentStatus?: "paid" | "unpaid" | "no_payment_required";
}

/** A checkout.session.* event for one purchase; ids are fresh unless given. */
export function checkoutEvent(
  type:
    | "checkout.session.completed"
    | "checkout.session.async_payment_succeeded"
    | "checkout.session.async_payment_failed"
    | "checkout.session.expired",
  options: CheckoutOptions,
): StripeEvent {
  const event = fixture(type);
  event.id = uniqueId("evt");
  const session = event.data.object;
  session.id = options.sessionId ?? uniqueId("cs");
  session.client_reference_id = options.userId;
  session.metadata = { credits: String(options.credits), user_id: options.userId };
  session.amount_total = options.amountCents ?? options.credits;
  session.payment_intent = options.paymentIntentId ?? uniqueId("pi");
  if (options.paymentStatus) session.payment_status = options.paymentStatus;
  return event;
}

export function refundEvent(
  paymentIntentId: string,
  amount: number,
  amountRefunded: number,
  chargeId?: string,
) {
  const event = fixture("charge.refunded");
  event.id = uniqueId("evt");
  Object.assign(event.data.object, {
    id: chargeId ?? uniqueId("ch"),
    payment_intent: paymentIntentId,
    amount,
    amount_captured: amount,
    amount_refunded: amountRefunded,
    refunded: amountRefunded >= amount,
  });
  return event;
}

export function disputeEvent(
  type: "charge.dispute.created" | "charge.dispute.closed",
  paymentIntentId: string,
  amount: number,
  status: string,
  disputeId: string,
) {
  const event = fixture(type);
  event.id = uniqueId("evt");
  Object.assign(event.data.object, { id: disputeId, payment_intent: paymentIntentId, amount, status });
  return event;
}

export async function signatureHeader(payload: string, timestamp?: number): Promise<string> {
  return await stripe.webhooks.generateTestHeaderStringAsync({
    payload,
    secret: stack.webhookSecret,
    timestamp,
    cryptoProvider,
  });
}

export interface Delivery {
  status: number;
  body: Record<string, unknown>;
}

/** POSTs an event to the stripe-webhook function, signed unless headers are given. */
export async function deliver(
  event: StripeEvent | string,
  init: { headers?: Record<string, string>; method?: string } = {},
): Promise<Delivery> {
  const payload = typeof event === "string" ? event : JSON.stringify(event);
  const headers = init.headers ??
    { "content-type": "application/json", "stripe-signature": await signatureHeader(payload) };
  const response = await fetch(stack.functionUrl("stripe-webhook"), {
    method: init.method ?? "POST",
    headers,
    body: init.method === "GET" ? undefined : payload,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : {} };
}
