// stripe-reconcile is open at the gateway (verify_jwt = false) and guards itself: only the
// service-role key, as a Bearer token, runs a reconciliation.
import assert from "node:assert/strict";
import { stack } from "./_helpers/env.ts";
import { userAccessToken } from "./_helpers/auth.ts";
import { startFakeStripe } from "./_helpers/fake-stripe.ts";
import { runReconcile } from "./_helpers/reconcile.ts";

async function post(headers: Record<string, string>, body = "{}") {
  const response = await fetch(stack.functionUrl("stripe-reconcile"), { method: "POST", headers, body });
  return { status: response.status, body: await response.json() };
}

Deno.test("stripe-reconcile refuses every caller but the service role, before touching Stripe", async () => {
  const stripe = startFakeStripe();
  try {
    const refused: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${stack.anonKey}` },
      { authorization: `Bearer ${await userAccessToken(crypto.randomUUID())}` },
      { authorization: `Bearer ${stack.serviceRoleKey}x` },
      { authorization: stack.serviceRoleKey },
      { apikey: stack.serviceRoleKey },
    ];
    for (const headers of refused) {
      const { status, body } = await post(headers);
      assert.equal(status, 401, JSON.stringify(headers));
      assert.deepEqual(body, { error: "the service-role key is required as a Bearer token" });
    }
    assert.equal(stripe.requests.length, 0);
  } finally {
    await stripe.close();
  }
});

Deno.test("stripe-reconcile validates its options and method", async () => {
  const auth = { authorization: `Bearer ${stack.serviceRoleKey}` };
  const unknown = await post(auth, JSON.stringify({ maxEvent: 5 }));
  assert.equal(unknown.status, 400);
  assert.equal(unknown.body.error, "invalid options");
  const outOfRange = await runReconcile({ maxEvents: 0 });
  assert.equal(outOfRange.status, 400);
  const notJson = await post(auth, "{");
  assert.equal(notJson.status, 400);
  const get = await fetch(stack.functionUrl("stripe-reconcile"), { headers: auth });
  assert.equal(get.status, 405);
  await get.body?.cancel();
});
