// JWT verification without a database: the well-known local keys, expiry, forgeries.
import assert from "node:assert/strict";
import { bearerToken, signJwt, verifyJwt } from "./jwt.ts";

// The Supabase CLI's local defaults (`supabase status` prints them); public by design.
const JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long";
const ANON_KEY =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0";
const SERVICE_ROLE_KEY =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU";

Deno.test("the well-known local anon and service_role keys verify with the local secret", async () => {
  const anon = await verifyJwt(ANON_KEY, JWT_SECRET);
  assert.ok(anon.ok);
  assert.equal(anon.claims.role, "anon");
  const service = await verifyJwt(SERVICE_ROLE_KEY, JWT_SECRET);
  assert.ok(service.ok);
  assert.equal(service.claims.role, "service_role");
});

Deno.test("a token signed here verifies and keeps its claims", async () => {
  const claims = { role: "authenticated", sub: crypto.randomUUID(), exp: Date.now() / 1000 + 60 };
  const result = await verifyJwt(await signJwt(claims, JWT_SECRET), JWT_SECRET);
  assert.deepEqual(result, { ok: true, claims });
});

Deno.test("an expired token is rejected as expired", async () => {
  const token = await signJwt({ role: "anon", exp: Math.floor(Date.now() / 1000) - 60 }, JWT_SECRET);
  const result = await verifyJwt(token, JWT_SECRET);
  assert.equal(result.ok, false);
  assert.equal(!result.ok && result.error, "expired");
});

Deno.test("wrong secret, tampered payload, alg none and garbage are invalid", async () => {
  const other = await signJwt({ role: "service_role" }, "another-secret-that-is-at-least-32-characters");
  const [header, , signature] = ANON_KEY.split(".");
  const forgedPayload = btoa(JSON.stringify({ role: "service_role", exp: 1983812996 }))
    .replace(/=+$/, "");
  const algNone = `${btoa(JSON.stringify({ alg: "none", typ: "JWT" })).replace(/=+$/, "")}.${
    ANON_KEY.split(".")[1]
  }.`;

  for (const token of [other, `${header}.${forgedPayload}.${signature}`, algNone, "a.b", "x.y.z"]) {
    const result = await verifyJwt(token, JWT_SECRET);
    assert.equal(!result.ok && result.error, "invalid", token);
  }
  const missing = await verifyJwt(null, JWT_SECRET);
  assert.equal(!missing.ok && missing.error, "missing");
});

Deno.test("bearerToken takes the token of a Bearer header and hands anything else on whole", () => {
  assert.equal(bearerToken(null), null);
  assert.equal(bearerToken("Bearer abc.def.ghi"), "abc.def.ghi");
  assert.equal(bearerToken("bearer abc.def.ghi"), "abc.def.ghi");
  assert.equal(bearerToken("Basic dXNlcjpwYXNz"), "Basic dXNlcjpwYXNz");
});
