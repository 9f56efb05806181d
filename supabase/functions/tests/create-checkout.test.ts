// create-checkout end to end through the gateway: a signed-in user picks a package, the
// function creates the Checkout Session on the (fake) Stripe API with the right parameters
// and idempotency key, records the pending recharge, and the paid session's webhook then
// completes that same recharge.
import assert from "node:assert/strict";
import { stack } from "./_helpers/env.ts";
import { userAccessToken } from "./_helpers/auth.ts";
import { createUser, invariantViolations, ledgerState, withDb } from "./_helpers/db.ts";
import { checkoutEvent, deliver } from "./_helpers/stripe-events.ts";
import { createPackage, rechargeRow } from "./_helpers/checkout.ts";
import { startFakeStripe } from "./_helpers/fake-stripe.ts";

const urls = {
  successUrl: "http://127.0.0.1:3000/credits/success?session_id={CHECKOUT_SESSION_ID}",
  cancelUrl: "http://127.0.0.1:3000/credits",
};

async function createCheckout(body: unknown, authorization?: string, method = "POST") {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (authorization !== undefined) headers.authorization = authorization;
  const response = await fetch(stack.functionUrl("create-checkout"), {
    method,
    headers,
    body: method === "GET" ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json(), headers: response.headers };
}

Deno.test("create-checkout creates the session with the right parameters and records the pending recharge", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      const userId = await createUser(sql);
      const pkg = await createPackage(sql, { credits: 1200, amountCents: 999 });
      stripe.addPrice(pkg.priceId, 999, "eur");
      const token = await userAccessToken(userId);

      const { status, body, headers } = await createCheckout(
        { packageId: pkg.id, ...urls, idempotencyKey: "purchase-0001" },
        `Bearer ${token}`,
      );
      assert.equal(status, 200, JSON.stringify(body));
      assert.equal(headers.get("access-control-allow-origin"), "*");
      assert.equal(stripe.created.length, 1);
      const [created] = stripe.created;
      assert.deepEqual(body, { url: created.session.url, sessionId: created.session.id });
      assert.equal(created.idempotencyKey, `create-checkout:${userId}:purchase-0001`);
      assert.deepEqual(created.params, {
        mode: "payment",
        "line_items[0][price]": pkg.priceId,
        "line_items[0][quantity]": "1",
        client_reference_id: userId,
        "metadata[user_id]": userId,
        "metadata[credits]": "1200",
        "metadata[package_id]": pkg.id,
        "payment_intent_data[metadata][user_id]": userId,
        "payment_intent_data[metadata][credits]": "1200",
        "payment_intent_data[metadata][package_id]": pkg.id,
        success_url: urls.successUrl,
        cancel_url: urls.cancelUrl,
      });

      const [recharge] = await rechargeRow(sql, body.sessionId);
      assert.equal(recharge.status, "pending");
      assert.equal(recharge.user_id, userId);
      assert.equal(Number(recharge.credits), 1200);
      assert.equal(Number(recharge.amount_cents), 999);
      assert.equal(recharge.currency, "eur");

      // The paid session's webhook completes that very recharge, once.
      const paid = checkoutEvent("checkout.session.completed", {
        userId,
        credits: 1200,
        amountCents: 999,
        sessionId: body.sessionId,
      });
      paid.data.object.currency = "eur";
      assert.equal((await deliver(paid)).status, 200);
      assert.equal((await deliver(paid)).status, 200);
      const rows = await rechargeRow(sql, body.sessionId);
      assert.equal(rows.length, 1);
      assert.equal(rows[0].id, recharge.id);
      assert.equal(rows[0].status, "completed");
      assert.equal((await ledgerState(sql, userId)).balance, 1200n);
      assert.deepEqual(await invariantViolations(sql, [userId]), []);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("the same idempotencyKey returns the same session and one recharge", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      const userId = await createUser(sql);
      const pkg = await createPackage(sql);
      stripe.addPrice(pkg.priceId, pkg.amountCents);
      const auth = `Bearer ${await userAccessToken(userId)}`;
      const request = { packageId: pkg.id, ...urls, idempotencyKey: "double-click-42" };

      const [first, second] = await Promise.all([
        createCheckout(request, auth),
        createCheckout(request, auth),
      ]);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.equal(second.status, 200, JSON.stringify(second.body));
      assert.equal(first.body.sessionId, second.body.sessionId);
      assert.equal(stripe.created.length, 1);
      const posts = stripe.requests.filter((r) => r.route === "POST /v1/checkout/sessions");
      assert.equal(posts.length, 2);
      assert.ok(posts.every((r) => r.idempotencyKey === `create-checkout:${userId}:double-click-42`));
      assert.equal((await rechargeRow(sql, first.body.sessionId)).length, 1);

      // Without a key, each request is a new purchase attempt with a fresh key.
      const { idempotencyKey: _, ...noKey } = request;
      const third = await createCheckout(noKey, auth);
      const fourth = await createCheckout(noKey, auth);
      assert.notEqual(third.body.sessionId, fourth.body.sessionId);
      assert.equal(stripe.created.length, 3);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("a 500 from Stripe is retried with the same idempotency key", async () => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      const userId = await createUser(sql);
      const pkg = await createPackage(sql);
      stripe.addPrice(pkg.priceId, pkg.amountCents);
      stripe.failNext("POST /v1/checkout/sessions", [500]);

      const { status, body } = await createCheckout(
        { packageId: pkg.id, ...urls },
        `Bearer ${await userAccessToken(userId)}`,
      );
      assert.equal(status, 200, JSON.stringify(body));
      const posts = stripe.requests.filter((r) => r.route === "POST /v1/checkout/sessions");
      assert.deepEqual(posts.map((r) => r.status), [500, 200]);
      assert.equal(posts[0].idempotencyKey, posts[1].idempotencyKey);
      assert.match(posts[0].idempotencyKey ?? "", new RegExp(`^create-checkout:${userId}:[0-9a-f-]{36}$`));
      assert.equal((await rechargeRow(sql, body.sessionId))[0].status, "pending");
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("create-checkout refuses callers without a user and bad or inactive packages", async (t) => {
  const stripe = startFakeStripe();
  try {
    await withDb(async (sql) => {
      const userId = await createUser(sql);
      const active = await createPackage(sql);
      const inactive = await createPackage(sql, { active: false });
      stripe.addPrice(active.priceId, active.amountCents);
      stripe.addPrice(inactive.priceId, inactive.amountCents);
      const user = `Bearer ${await userAccessToken(userId)}`;
      const request = { packageId: active.id, ...urls };

      await t.step("no JWT: the gateway answers 401", async () => {
        const { status, body } = await createCheckout(request);
        assert.equal(status, 401);
        assert.deepEqual(body, { msg: "Missing authorization header" });
      });
      await t.step("a JWT not signed by the project: 401", async () => {
        const forged = user.slice(0, -4) + "AAAA";
        assert.equal((await createCheckout(request, forged)).status, 401);
      });
      await t.step("the anon key is no user: 401", async () => {
        const { status, body } = await createCheckout(request, `Bearer ${stack.anonKey}`);
        assert.equal(status, 401);
        assert.equal(body.error, "sign in to buy credits: a user's access token is required");
      });
      await t.step("the service-role key is no user either: 401", async () => {
        const { status } = await createCheckout(request, `Bearer ${stack.serviceRoleKey}`);
        assert.equal(status, 401);
      });
      await t.step("a token for a user that does not exist: 401", async () => {
        const ghost = `Bearer ${await userAccessToken(crypto.randomUUID())}`;
        const { status, body } = await createCheckout(request, ghost);
        assert.equal(status, 401);
        assert.equal(body.error, "the signed-in user no longer exists");
      });
      await t.step("a package id that is not a uuid: 400", async () => {
        const { status, body } = await createCheckout({ ...request, packageId: "gold" }, user);
        assert.equal(status, 400);
        assert.equal(body.error, "invalid request: check packageId");
      });
      await t.step("an unknown package: 404", async () => {
        const { status, body } = await createCheckout({ ...request, packageId: crypto.randomUUID() }, user);
        assert.equal(status, 404);
        assert.equal(body.error, "unknown credit package");
      });
      await t.step("an inactive package: 422", async () => {
        const { status, body } = await createCheckout({ ...request, packageId: inactive.id }, user);
        assert.equal(status, 422);
        assert.deepEqual(body, { error: "this credit package is no longer sold", packageId: inactive.id });
      });
      await t.step("a success URL on a foreign origin: 400", async () => {
        const { status, body } = await createCheckout(
          { ...request, successUrl: "https://evil.example/x" },
          user,
        );
        assert.equal(status, 400);
        assert.equal(body.error, "successUrl must be on an allowed origin");
      });
      await t.step("no URLs and no configured defaults: 400", async () => {
        const { status, body } = await createCheckout({ packageId: active.id }, user);
        assert.equal(status, 400);
        assert.equal(body.error, "successUrl is required (no default is configured)");
      });
      await t.step("not JSON, unknown fields, wrong method: 400, 400, 405", async () => {
        assert.equal((await createCheckout("{", user)).status, 400);
        assert.equal((await createCheckout({ ...request, credits: 1_000_000 }, user)).status, 400);
        assert.equal((await createCheckout(undefined, user, "GET")).status, 405);
      });

      // Only the unknown-user case reached Stripe (the user is only known missing when the
      // recharge is recorded); no refusal recorded a recharge.
      assert.ok(stripe.created.length <= 1);
      const [row] =
        await sql`select count(*)::int as n from public.credit_recharge where user_id = ${userId}`;
      assert.equal(row.n, 0);
    });
  } finally {
    await stripe.close();
  }
});

Deno.test("create-checkout answers CORS preflights", async () => {
  const response = await fetch(stack.functionUrl("create-checkout"), {
    method: "OPTIONS",
    headers: { origin: "http://127.0.0.1:3000", "access-control-request-method": "POST" },
  });
  await response.body?.cancel();
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
  assert.match(response.headers.get("access-control-allow-headers") ?? "", /authorization/);
});
