// End-to-end webhook load: signed checkout.session.completed events POSTed to the
// stripe-webhook function through the gateway, `concurrency` in flight, for `seconds`.
// Prints one JSON line: {"events": N, "seconds": S, "eventsPerSecond": R, "errors": E}.
//
//   deno run -A bench/webhook-load.ts <concurrency> <seconds>
import Stripe from "stripe";
import postgres from "postgres";

const [concurrency, seconds] = Deno.args.map(Number);
const url = `${Deno.env.get("SUPABASE_URL")}/functions/v1/stripe-webhook`;
const secret = Deno.env.get("STRIPE_WEBHOOK_SECRET") ?? "";
const stripe = new Stripe("sk_test_unused", { httpClient: Stripe.createFetchHttpClient() });
const cryptoProvider = Stripe.createSubtleCryptoProvider();

const sql = postgres(Deno.env.get("SUPABASE_DB_URL") ?? "", { max: 1 });
const buyers = (await sql`select id from bench.buyer order by n limit 1000`).map((row) => row.id as string);
await sql.end();

let sent = 0;
let errors = 0;
const deadline = performance.now() + seconds * 1000;

async function worker(worker: number) {
  for (let i = 0; performance.now() < deadline; i++) {
    const n = `${worker}_${i}_${crypto.randomUUID().slice(0, 8)}`;
    const payload = JSON.stringify({
      id: `evt_load_${n}`,
      object: "event",
      type: "checkout.session.completed",
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      data: {
        object: {
          id: `cs_load_${n}`,
          object: "checkout.session",
          client_reference_id: buyers[i % buyers.length],
          payment_status: "paid",
          payment_intent: `pi_load_${n}`,
          amount_total: 100,
          currency: "usd",
          metadata: { credits: "100" },
        },
      },
    });
    const signature = await stripe.webhooks.generateTestHeaderStringAsync({
      payload,
      secret,
      cryptoProvider,
    });
    const response = await fetch(url, {
      method: "POST",
      headers: { "stripe-signature": signature },
      body: payload,
    });
    await response.body?.cancel();
    if (response.status === 200) sent++;
    else errors++;
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: concurrency }, (_, i) => worker(i)));
const elapsed = (performance.now() - started) / 1000;
console.log(JSON.stringify({ events: sent, seconds: elapsed, eventsPerSecond: sent / elapsed, errors }));
