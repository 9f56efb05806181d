// Sends a signed checkout.session.completed to the local stripe-webhook function, the way
// Stripe would, so the write path can be tried without the Stripe CLI.
//
//   npm run send-test-event -- <user-id> <credits> [event-id]
//
// Repeat the same event id to see a duplicate delivery answered without effect.
import Stripe from "stripe";

const [userId, credits, eventId = `evt_local_${crypto.randomUUID().replaceAll("-", "")}`] = Deno.args;
if (!userId || !/^[1-9][0-9]*$/.test(credits ?? "")) {
  console.error("usage: npm run send-test-event -- <user-id> <credits> [event-id]");
  Deno.exit(2);
}
const secret = Deno.env.get("STRIPE_WEBHOOK_SECRET");
const url = `${Deno.env.get("SUPABASE_URL") ?? "http://127.0.0.1:54321"}/functions/v1/stripe-webhook`;
if (!secret) {
  console.error("STRIPE_WEBHOOK_SECRET is not set");
  Deno.exit(2);
}

const suffix = eventId.replace(/^evt_/, "");
const payload = JSON.stringify({
  id: eventId,
  object: "event",
  type: "checkout.session.completed",
  created: Math.floor(Date.now() / 1000),
  livemode: false,
  data: {
    object: {
      id: `cs_local_${suffix}`,
      object: "checkout.session",
      client_reference_id: userId,
      payment_status: "paid",
      payment_intent: `pi_local_${suffix}`,
      amount_total: Number(credits),
      currency: "usd",
      metadata: { credits },
    },
  },
});
const stripe = new Stripe("sk_test_unused", { httpClient: Stripe.createFetchHttpClient() });
const signature = await stripe.webhooks.generateTestHeaderStringAsync({
  payload,
  secret,
  cryptoProvider: Stripe.createSubtleCryptoProvider(),
});
const response = await fetch(url, {
  method: "POST",
  headers: { "stripe-signature": signature },
  body: payload,
});
console.log(response.status, await response.text());
