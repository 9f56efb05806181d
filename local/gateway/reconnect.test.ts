// The gateway when PostgreSQL drops its connections under it (pg_terminate_backend, as the
// torture run does): the request that lost its connection is answered 503 PGRST001, as on the
// platform, and the next requests are answered at once. With postgres.js 3.4.9 the gateway
// could stay wedged after such kills (each request waiting 30 s for its connect timeout, or
// failing at once for good), which made `npm test`'s torture step fail now and then.
// Needs what gateway.test.ts needs, and SUPABASE_ADMIN_DB_URL (a superuser, to kill backends).
import assert from "node:assert/strict";
import postgres from "postgres";
import { startGateway } from "./server.ts";

const JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long";
const SERVICE_ROLE_KEY =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU";

function requiredEnv(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} must be set to run the gateway tests (see the file header)`);
  return value;
}

const work = `gw_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}_work`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

Deno.test("gateway: backends killed under it", async (t) => {
  const owner = postgres(requiredEnv("SUPABASE_DB_URL"), { max: 1, onnotice: () => {} });
  const admin = postgres(requiredEnv("SUPABASE_ADMIN_DB_URL"), { max: 1, onnotice: () => {} });
  // Errors thrown outside any request: the gateway survives them, but they are what wedged it.
  const outside: string[] = [];
  const onOutside = (event: ErrorEvent | PromiseRejectionEvent) =>
    outside.push(event instanceof ErrorEvent ? event.message : String(event.reason));
  let gateway: ReturnType<typeof startGateway> | undefined;
  try {
    await owner.unsafe(`
      create function public.${work}(ms int) returns int language sql as $$
        select pg_catalog.pg_sleep(ms / 1000.0);
        select pg_catalog.pg_backend_pid()
      $$;
      revoke execute on function public.${work}(int) from public, anon, authenticated;
      grant execute on function public.${work}(int) to service_role;
    `);
    gateway = startGateway({
      port: 0,
      databaseUrl: requiredEnv("GATEWAY_TEST_AUTHENTICATOR_URL"),
      jwtSecret: JWT_SECRET,
      functions: {},
      configTomlPath: "/dev/null",
    });
    const url = `${gateway.url}/rest/v1/rpc/${work}`;
    globalThis.addEventListener("error", onOutside);
    globalThis.addEventListener("unhandledrejection", onOutside);

    // Every backend the gateway ran a call on: the function answers with its pid.
    const pids = new Set<number>();
    const call = async (ms: number) => {
      const started = performance.now();
      const res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${SERVICE_ROLE_KEY}` },
        body: JSON.stringify({ ms }),
        signal: AbortSignal.timeout(40_000),
      });
      const body = await res.json();
      if (res.status === 200) pids.add(body);
      return { status: res.status, body, ms: performance.now() - started };
    };
    const alive = async (among: number[]) =>
      (await admin`select pid from pg_catalog.pg_stat_activity where pid = any(${among}::int[])`).length;
    const kill = (among: number[]) =>
      admin`select pg_catalog.pg_terminate_backend(pid) from pg_catalog.pg_stat_activity
            where pid = any(${among}::int[])`;
    // Ten calls at once until all are answered 200 three times in a row, each within 4 s.
    // Returns the backends of those last 30 calls.
    const recovery = async () => {
      const started = performance.now();
      const used = new Set<number>();
      for (let good = 0; good < 3;) {
        const answers = await Promise.all(Array.from({ length: 10 }, () => call(0)));
        const slowest = Math.max(...answers.map((a) => a.ms));
        assert.ok(slowest < 4_000, `a call took ${Math.round(slowest)} ms`);
        if (answers.every((a) => a.status === 200)) {
          good++;
          answers.forEach((a) => used.add(a.body));
        } else {
          good = 0;
          used.clear();
        }
        assert.ok(performance.now() - started < 8_000, "the gateway does not answer again after 8 s");
      }
      return [...used];
    };

    await t.step("the call whose backend is killed gets 503, the next ones a new pool", async () => {
      await Promise.all(Array.from({ length: 10 }, () => call(50))); // a pool of several connections
      const before = [...pids];
      assert.ok(before.length > 1);

      const victim = call(10_000);
      let pid: number | undefined;
      while (pid === undefined) {
        await sleep(20);
        [{ pid } = { pid: undefined }] = await admin`
          select pid from pg_catalog.pg_stat_activity
          where pid = any(${before}::int[]) and state = 'active' and query like ${`%${work}%`}`;
      }
      await kill([pid]);
      const lost = await victim;
      assert.equal(lost.status, 503);
      assert.equal(lost.body.code, "PGRST001");

      // Only on new connections: postgres.js may have left any connection of the pool that lost
      // one unable to reconnect, idle ones included. The old pool is kept a while...
      const used = await recovery();
      assert.deepEqual(used.filter((pid) => before.includes(pid)), []);
      assert.ok(await alive(before) > 0);
      // ... and closed 5 s after its replacement.
      for (let i = 0; await alive(before) > 0; i++) {
        assert.ok(i < 100, "the replaced pool still holds connections 10 s later");
        await sleep(100);
      }
      assert.deepEqual(outside, []);
    });

    await t.step("all backends killed under load, 8 times: answers again within seconds", async () => {
      for (let round = 0; round < 8; round++) {
        let stop = false;
        const load = Array.from({ length: 8 }, async () => {
          while (!stop) await call(Math.floor(Math.random() * 10));
        });
        await sleep(100 + Math.random() * 100);
        await kill([...pids]);
        await sleep(Math.random() * 50);
        stop = true;
        await Promise.all(load);
        await recovery();
      }
      assert.deepEqual(outside, []);
    });
  } finally {
    globalThis.removeEventListener("error", onOutside);
    globalThis.removeEventListener("unhandledrejection", onOutside);
    await gateway?.shutdown();
    await owner.unsafe(`drop function if exists public.${work}(int)`);
    await owner.end();
    await admin.end();
  }
});
