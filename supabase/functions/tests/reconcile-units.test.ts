// The small pure pieces behind create-checkout and stripe-reconcile, without a stack.
import assert from "node:assert/strict";
import Stripe from "stripe";
import { backoffMs, callStripe, retryReason, summarizeStripeError } from "../_shared/stripe-retry.ts";
import { hasBearerSecret, timingSafeEqual } from "../_shared/bearer-auth.ts";
import { stripeConnectionOptions } from "../_shared/stripe-client.ts";
import { reconcileOptions } from "../_shared/reconcile-options.ts";
import { resolveCheckoutUrls } from "../create-checkout/urls.ts";

const stripeError = (statusCode: number, extra: Record<string, unknown> = {}) =>
  Stripe.errors.StripeError.generate({ statusCode, type: "api_error", message: "secret detail", ...extra });

Deno.test("retryReason retries 429, 5xx, 409 and network errors, nothing else", () => {
  assert.equal(retryReason(stripeError(429)), "rate_limited");
  assert.equal(retryReason(stripeError(500)), "server_error");
  assert.equal(retryReason(stripeError(503)), "server_error");
  assert.equal(retryReason(stripeError(409)), "conflict");
  assert.equal(retryReason(new Stripe.errors.StripeConnectionError({ message: "ECONNRESET" })), "network");
  assert.equal(retryReason(stripeError(400, { type: "invalid_request_error" })), null);
  assert.equal(retryReason(stripeError(401)), null);
  assert.equal(retryReason(stripeError(500, { headers: { "stripe-should-retry": "false" } })), null);
  assert.equal(retryReason(new TypeError("bug")), null);
});

Deno.test("summaries of Stripe errors never carry the message", () => {
  const summary = summarizeStripeError(stripeError(429, { code: "rate_limit", requestId: "req_1" }));
  assert.deepEqual(summary, {
    type: "StripeRateLimitError",
    code: "rate_limit",
    statusCode: 429,
    requestId: "req_1",
    retryable: true,
  });
  assert.ok(!JSON.stringify(summary).includes("secret detail"));
});

Deno.test("backoff doubles up to the cap, with jitter in its upper half", () => {
  const policy = { maxRetries: 5, baseDelayMs: 100, maxDelayMs: 1000 };
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffMs(n, policy, () => 1)), [100, 200, 400, 800, 1000]);
  assert.deepEqual([1, 2, 3].map((n) => backoffMs(n, policy, () => 0)), [50, 100, 200]);
});

Deno.test("callStripe retries until success, reports each retry, and gives up at the limit", async () => {
  const waits: number[] = [];
  const retries: string[] = [];
  let calls = 0;
  const options = {
    policy: { maxRetries: 3, baseDelayMs: 10, maxDelayMs: 100 },
    sleep: (ms: number) => {
      waits.push(ms);
      return Promise.resolve();
    },
    onRetry: (r: { reason: string; attempt: number }) => retries.push(`${r.attempt}:${r.reason}`),
    random: () => 1,
  };
  const flaky = () => {
    calls++;
    return calls < 3 ? Promise.reject(stripeError(calls === 1 ? 429 : 502)) : Promise.resolve("ok");
  };
  assert.equal(await callStripe("test", flaky, options), "ok");
  assert.deepEqual(retries, ["1:rate_limited", "2:server_error"]);
  assert.deepEqual(waits, [10, 20]);

  calls = 0;
  await assert.rejects(callStripe("test", () => (calls++, Promise.reject(stripeError(500))), options));
  assert.equal(calls, 4);
  calls = 0;
  await assert.rejects(callStripe("test", () => (calls++, Promise.reject(stripeError(400))), options));
  assert.equal(calls, 1, "a refusal is not retried");
  calls = 0;
  const deadline = Date.now() + 5;
  await assert.rejects(
    callStripe("test", () => (calls++, Promise.reject(stripeError(500))), { ...options, deadline }),
  );
  assert.equal(calls, 1, "no wait goes past the deadline");
});

Deno.test("the bearer check accepts exactly the secret", async () => {
  const request = (authorization?: string) =>
    new Request("http://localhost/", { headers: authorization ? { authorization } : {} });
  assert.equal(await hasBearerSecret(request("Bearer s3cret"), "s3cret"), true);
  assert.equal(await hasBearerSecret(request("bearer s3cret"), "s3cret"), true);
  assert.equal(await hasBearerSecret(request("Bearer s3cre"), "s3cret"), false);
  assert.equal(await hasBearerSecret(request("s3cret"), "s3cret"), false);
  assert.equal(await hasBearerSecret(request(), "s3cret"), false);
  assert.equal(await timingSafeEqual("", ""), true);
  assert.equal(await timingSafeEqual("a", "b"), false);
});

Deno.test("STRIPE_API_BASE becomes stripe-node's host, port and protocol", () => {
  assert.deepEqual(stripeConnectionOptions(undefined), {});
  assert.deepEqual(stripeConnectionOptions("http://127.0.0.1:12111"), {
    host: "127.0.0.1",
    port: 12111,
    protocol: "http",
  });
  assert.deepEqual(stripeConnectionOptions("https://stripe-mock.internal"), {
    host: "stripe-mock.internal",
    port: 443,
    protocol: "https",
  });
});

Deno.test("reconcile options: defaults, bounds, unknown keys refused", () => {
  const defaults = reconcileOptions({});
  assert.equal(defaults.maxEvents, 200);
  assert.equal(defaults.pendingOlderThanSeconds, 3600);
  assert.equal(defaults.dryRun, false);
  assert.deepEqual(defaults.retry, { maxRetries: 4, baseDelayMs: 500, maxDelayMs: 8000 });
  assert.throws(() => reconcileOptions({ maxEvents: 0 }));
  assert.throws(() => reconcileOptions({ pageSize: 101 }));
  assert.throws(() => reconcileOptions({ maxEvent: 5 }));
});

Deno.test("checkout URLs: defaults, allowed origins, loopback only when nothing is configured", () => {
  const none = { allowedOrigins: [] };
  assert.deepEqual(
    resolveCheckoutUrls(none, { successUrl: "http://localhost:3000/a", cancelUrl: "http://127.0.0.1/b" }),
    {
      successUrl: "http://localhost:3000/a",
      cancelUrl: "http://127.0.0.1/b",
    },
  );
  assert.deepEqual(
    resolveCheckoutUrls(none, { successUrl: "https://a.example/x", cancelUrl: "http://localhost/" }),
    {
      error: "successUrl must be on an allowed origin",
    },
  );
  assert.deepEqual(resolveCheckoutUrls(none, { successUrl: "http://localhost/" }), {
    error: "cancelUrl is required (no default is configured)",
  });
  const configured = {
    successUrl: "https://a.example/ok",
    cancelUrl: "https://a.example/no",
    allowedOrigins: [],
  };
  assert.deepEqual(resolveCheckoutUrls(configured, { cancelUrl: "https://a.example/other" }), {
    successUrl: "https://a.example/ok",
    cancelUrl: "https://a.example/other",
  });
  for (const bad of ["javascript:alert(1)", "ftp://a.example/", "https://user:pw@a.example/", "not a url"]) {
    assert.ok("error" in resolveCheckoutUrls(configured, { successUrl: bad }), bad);
  }
});
