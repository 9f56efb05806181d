// create-checkout's handler built in the test process with its own configuration (allowed
// origins, default URLs, fast retries), against the real gateway, database and fake Stripe.
import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import { createCheckoutHandler } from "../create-checkout/handler.ts";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { createStripeClient } from "../_shared/stripe-client.ts";
import { stack } from "./_helpers/env.ts";
import { userAccessToken } from "./_helpers/auth.ts";
import { createUser, withDb } from "./_helpers/db.ts";
import { createPackage, rechargeRow } from "./_helpers/checkout.ts";
import { startFakeStripe } from "./_helpers/fake-stripe.ts";

const logs: string[] = [];
const handler = createCheckoutHandler({
  stripe: createStripeClient("sk_test_local_placeholder", Deno.env.get("STRIPE_API_BASE")),
  db: createAdminClient(stack.url, stack.serviceRoleKey),
  userDb: (authorization) =>
    createClient(stack.url, stack.anonKey, {
      auth: { persistSession: false, autoRefreshToken: false },
      global: { headers: { Authorization: authorization } },
    }),
  urls: {
    successUrl: "https://shop.example/credits/done?session_id={CHECKOUT_SESSION_ID}",
    cancelUrl: "https://shop.example/credits",
    allowedOrigins: ["https://app.example"],
  },
  retry: { maxRetries: 2, baseDelayMs: 5, maxDelayMs: 10 },
  log: (message) => logs.push(message),
});

async function call(body: unknown, userId: string) {
  const response = await handler(
    new Request("http://localhost/create-checkout", {
      method: "POST",
      headers: {
        authorization: `Bearer ${await userAccessToken(userId)}`,
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
    }),
  );
  return { status: response.status, body: await response.json() };
}

Deno.test("configured default URLs are used, and request URLs must be on an allowed origin", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      const userId = await createUser(sql);
      const pkg = await createPackage(sql);
      stripe.addPrice(pkg.priceId, pkg.amountCents);

      const defaults = await call({ packageId: pkg.id }, userId);
      assert.equal(defaults.status, 200, JSON.stringify(defaults.body));
      assert.equal(
        stripe.created[0].params.success_url,
        "https://shop.example/credits/done?session_id={CHECKOUT_SESSION_ID}",
      );
      assert.equal(stripe.created[0].params.cancel_url, "https://shop.example/credits");

      const own = await call({ packageId: pkg.id, successUrl: "https://app.example/thanks" }, userId);
      assert.equal(own.status, 200);
      assert.equal(stripe.created[1].params.success_url, "https://app.example/thanks");

      for (
        const successUrl of ["http://127.0.0.1:3000/ok", "http://app.example/ok", "https://evil.example/ok"]
      ) {
        const refused = await call({ packageId: pkg.id, successUrl }, userId);
        assert.equal(refused.status, 400, successUrl);
      }
      assert.equal(stripe.created.length, 2);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("Stripe unavailable after the retries: 503, the key to retry with, and no recharge", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      const userId = await createUser(sql);
      const pkg = await createPackage(sql);
      stripe.addPrice(pkg.priceId, pkg.amountCents);
      stripe.failNext("POST /v1/checkout/sessions", [429, 429, 429]);

      const { status, body } = await call({ packageId: pkg.id, idempotencyKey: "retry-me-later" }, userId);
      assert.equal(status, 503);
      assert.deepEqual(body, {
        error: "Stripe is unavailable; try again with the same idempotencyKey",
        idempotencyKey: "retry-me-later",
      });
      assert.equal(stripe.requests.length, 3);
      assert.equal(logs.filter((line) => line.includes("(rate_limited)")).length, 2);
      const [row] =
        await sql`select count(*)::int as n from public.credit_recharge where user_id = ${userId}`;
      assert.equal(row.n, 0);

      // Retrying with the same key once Stripe is back creates and records the session.
      const retried = await call({ packageId: pkg.id, idempotencyKey: "retry-me-later" }, userId);
      assert.equal(retried.status, 200);
      assert.equal((await rechargeRow(sql, retried.body.sessionId)).length, 1);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("Stripe refusing the request: 409 for a reused key, 502 for an unknown price", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      const userId = await createUser(sql);
      const first = await createPackage(sql);
      const second = await createPackage(sql);
      stripe.addPrice(first.priceId, first.amountCents);
      stripe.addPrice(second.priceId, second.amountCents);

      assert.equal((await call({ packageId: first.id, idempotencyKey: "one-attempt" }, userId)).status, 200);
      const reused = await call({ packageId: second.id, idempotencyKey: "one-attempt" }, userId);
      assert.equal(reused.status, 409);
      assert.equal(reused.body.error, "idempotencyKey was already used for a different checkout");

      const unpriced = await createPackage(sql);
      const refused = await call({ packageId: unpriced.id }, userId);
      assert.equal(refused.status, 502);
      assert.deepEqual(refused.body, { error: "Stripe refused to create the checkout session" });
    });
  } finally {
    await stripe.close();
  }
});
