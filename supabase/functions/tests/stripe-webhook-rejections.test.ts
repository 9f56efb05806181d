// Requests that are not genuine Stripe events are refused with 400 and write nothing.
import assert from "node:assert/strict";
import { countRows, createUser, withDb } from "./_helpers/db.ts";
import { checkoutEvent, deliver, signatureHeader } from "./_helpers/stripe-events.ts";
import { MAX_BODY_BYTES } from "../stripe-webhook/handler.ts";

async function assertRefused(
  name: string,
  send: () => Promise<{ status: number; body: Record<string, unknown> }>,
  error: RegExp,
) {
  await withDb(async (sql) => {
    const before = await countRows(sql);
    const response = await send();
    assert.equal(response.status, 400, name);
    assert.match(String(response.body.error), error, name);
    assert.deepEqual(await countRows(sql), before, `${name}: nothing written`);
  });
}

async function paidEvent() {
  return await withDb(async (sql) =>
    checkoutEvent("checkout.session.completed", { userId: await createUser(sql), credits: 5 })
  );
}

Deno.test("a signature made with another secret is refused", async () => {
  const payload = JSON.stringify(await paidEvent());
  const header = (await signatureHeader(payload)).replace(/v1=[0-9a-f]+/, `v1=${"ab".repeat(32)}`);
  await assertRefused(
    "bad signature",
    () => deliver(payload, { headers: { "stripe-signature": header } }),
    /signature verification failed/,
  );
});

Deno.test("a body with one byte changed after signing is refused", async () => {
  const payload = JSON.stringify(await paidEvent());
  const header = await signatureHeader(payload);
  const tampered = payload.replace('"credits":"5"', '"credits":"6"');
  assert.notEqual(tampered, payload);
  await assertRefused(
    "one byte changed",
    () => deliver(tampered, { headers: { "stripe-signature": header } }),
    /signature verification failed/,
  );
});

Deno.test("a stale signature timestamp is refused", async () => {
  const payload = JSON.stringify(await paidEvent());
  const header = await signatureHeader(payload, Math.floor(Date.now() / 1000) - 3600);
  await assertRefused(
    "stale timestamp",
    () => deliver(payload, { headers: { "stripe-signature": header } }),
    /tolerance/,
  );
});

Deno.test("a request without Stripe-Signature is refused", async () => {
  const payload = JSON.stringify(await paidEvent());
  await assertRefused(
    "missing header",
    () => deliver(payload, { headers: { "content-type": "application/json" } }),
    /missing Stripe-Signature/,
  );
});

Deno.test("a method other than POST is refused", async () => {
  await assertRefused("GET", () => deliver("", { method: "GET", headers: {} }), /method GET not allowed/);
  const payload = JSON.stringify(await paidEvent());
  const header = await signatureHeader(payload);
  await assertRefused(
    "PUT",
    () => deliver(payload, { method: "PUT", headers: { "stripe-signature": header } }),
    /method PUT not allowed/,
  );
});

Deno.test("a correctly signed body that is not JSON is refused", async () => {
  const payload = "this is not json";
  const header = await signatureHeader(payload);
  await assertRefused(
    "non-JSON",
    () => deliver(payload, { headers: { "stripe-signature": header } }),
    /not a JSON Stripe event/,
  );
});

Deno.test("an oversized body is refused before it is read whole", async () => {
  const payload = JSON.stringify({ padding: "x".repeat(MAX_BODY_BYTES + 1) });
  const header = await signatureHeader(payload);
  await assertRefused(
    "oversized",
    () => deliver(payload, { headers: { "stripe-signature": header } }),
    /larger than/,
  );
});

Deno.test("a correctly signed JSON body that is not an event is refused", async () => {
  for (const body of ["[]", "null", '{"id":"evt_1"}', '{"id":"evt_1","type":"x","data":{"object":[]}}']) {
    const header = await signatureHeader(body);
    await assertRefused(
      `not an event: ${body}`,
      () => deliver(body, { headers: { "stripe-signature": header } }),
      /not a JSON Stripe event/,
    );
  }
});
