// The gateway against a real PostgreSQL: PostgREST's RPC contract as supabase-js and SQL code
// see it, and the functions relay. Needs a bootstrapped database (local/platform/bootstrap.sql):
//   SUPABASE_DB_URL                 a role that may create functions in public (e.g. postgres)
//   GATEWAY_TEST_AUTHENTICATOR_URL  the authenticator role's URL, as the gateway logs in
// The test creates its functions under a unique prefix in public and drops them at the end.
import assert from "node:assert/strict";
import postgres from "postgres";
import { createClient } from "@supabase/supabase-js";
import { signJwt } from "./jwt.ts";
import { startGateway } from "./server.ts";

// The Supabase CLI's local defaults, public by design (jwt.test.ts checks they verify).
const JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long";
const ANON_KEY =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6ImFub24iLCJleHAiOjE5ODM4MTI5OTZ9.CRXP1A7WOeoJeXxjNni43kdQwgnWNReilDMblYTn_I0";
const SERVICE_ROLE_KEY =
  "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzdXBhYmFzZS1kZW1vIiwicm9sZSI6InNlcnZpY2Vfcm9sZSIsImV4cCI6MTk4MzgxMjk5Nn0.EGIM96RAZx35lJzdJsyH-qQwv8Hdp7fsn3W0YpN81IU";

function requiredEnv(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`${name} must be set to run the gateway tests (see the file header)`);
  return value;
}

const prefix = `gw_test_${crypto.randomUUID().replaceAll("-", "").slice(0, 10)}`;
const fn = (name: string) => `${prefix}_${name}`;

const setupSql = `
create table public.${fn("items")} (id int primary key);
grant select, insert on public.${fn("items")} to anon, authenticated, service_role;

create function public.${fn("add")}(a int, b int default 10) returns int
language sql as $$ select a + b $$;

create function public.${fn("echo_jsonb")}(payload jsonb, note text default null) returns jsonb
language sql as $$ select jsonb_build_object('payload', payload, 'note', note) $$;

create function public.${fn("arrays")}(ids uuid[], tags text[], nums bigint[]) returns jsonb
language sql as $$
  select jsonb_build_object('ids', ids, 'tags', tags, 'sum', (select sum(x) from unnest(nums) x))
$$;

create function public.${fn("series")}(n int) returns setof int
language sql as $$ select generate_series(1, n) $$;

create function public.${fn("table")}(n int) returns table (i int, label text)
language sql as $$ select g, 'row ' || g from generate_series(1, n) g $$;

create function public.${fn("one_out")}(out total bigint)
language sql as $$ select 42::bigint $$;

create function public.${fn("item")}(id int) returns public.${fn("items")}
language sql as $$ select row(id)::public.${fn("items")} $$;

create function public.${fn("nothing")}() returns void
language sql as $$ select $$;

create function public.${fn("pick")}(a int) returns text language sql as $$ select 'int' $$;
create function public.${fn("pick")}(b text) returns text language sql as $$ select 'text' $$;

create function public.${fn("whoami")}() returns jsonb
language sql stable as $$
  select jsonb_build_object(
    'current_user', current_user,
    'role', auth.role(),
    'uid', auth.uid(),
    'claims', current_setting('request.jwt.claims', true)::jsonb,
    'method', current_setting('request.method', true),
    'path', current_setting('request.path', true),
    'statement_timeout', current_setting('statement_timeout')
  )
$$;

create function public.${fn("fail")}() returns void
language plpgsql as $$
begin
  raise exception 'not enough credits' using detail = 'balance is 0', hint = 'recharge first';
end
$$;

create function public.${fn("payment_required")}() returns void
language plpgsql as $$
begin
  raise sqlstate 'PT402' using message = 'pay first';
end
$$;

create function public.${fn("insert_item")}(id int) returns void
language sql as $$ insert into public.${fn("items")} (id) values (id) $$;

create function public.${fn("service_only")}() returns text
language sql as $$ select 'secret stuff' $$;
revoke execute on function public.${fn("service_only")}() from public, anon, authenticated;
grant execute on function public.${fn("service_only")}() to service_role;
`;

// The package's first migration removes the platform's default EXECUTE grants, so the test
// grants its own functions explicitly, as a project's migration would.
const grantSql = `
do $$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname = 'public' and p.proname like '${prefix}%' and p.proname <> '${fn("service_only")}'
  loop
    execute format('grant execute on function %s to anon, authenticated, service_role', f);
  end loop;
end
$$`;

type Json = Record<string, unknown>;

Deno.test("gateway: PostgREST RPC contract and functions relay", async (t) => {
  const admin = postgres(requiredEnv("SUPABASE_DB_URL"), { max: 1, onnotice: () => {} });
  const authenticatorUrl = requiredEnv("GATEWAY_TEST_AUTHENTICATOR_URL");

  // A stand-in edge function server that reports what reached it. Its /echo/stream sends a
  // first chunk and holds the second until the test has received the first via the gateway.
  let releaseSecondChunk = () => {};
  const secondChunkReleased = new Promise<void>((resolve) => releaseSecondChunk = resolve);
  const upstream = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (req) => {
    const url = new URL(req.url);
    if (url.pathname === "/echo/stream") {
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(new TextEncoder().encode("first;"));
          await secondChunkReleased;
          controller.enqueue(new TextEncoder().encode("second"));
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }
    return Response.json({
      method: req.method,
      path: url.pathname,
      query: url.search,
      body: await req.text(),
      authorization: req.headers.get("authorization"),
      custom: req.headers.get("x-custom"),
    }, { status: 201, headers: { "x-from-function": "yes" } });
  });
  const upstreamUrl = `http://127.0.0.1:${upstream.addr.port}`;

  const configDir = await Deno.makeTempDir();
  const configTomlPath = `${configDir}/config.toml`;
  await Deno.writeTextFile(
    configTomlPath,
    `project_id = "test"\n\n[functions.open]\nverify_jwt = false\n\n[functions.guarded]\nverify_jwt = true\n`,
  );

  let gateway: ReturnType<typeof startGateway> | undefined;
  try {
    await admin.unsafe(setupSql);
    await admin.unsafe(grantSql);
    gateway = startGateway({
      port: 0,
      databaseUrl: authenticatorUrl,
      jwtSecret: JWT_SECRET,
      functions: { echo: upstreamUrl, open: upstreamUrl, guarded: upstreamUrl },
      configTomlPath,
    });
    const base = gateway.url;
    const userId = crypto.randomUUID();
    const userToken = await signJwt(
      { role: "authenticated", sub: userId, exp: Math.floor(Date.now() / 1000) + 600 },
      JWT_SECRET,
    );

    // POSTs to the RPC endpoint, by default with the anon key as supabase-js sends it.
    const rpc = async (
      name: string,
      body: unknown,
      headers: Record<string, string> = { apikey: ANON_KEY, authorization: `Bearer ${ANON_KEY}` },
    ): Promise<{ status: number; json: unknown; text: string }> => {
      const res = await fetch(`${base}/rest/v1/rpc/${name}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await res.text();
      return { status: res.status, text, json: text === "" ? undefined : JSON.parse(text) };
    };

    await t.step("scalar result, named args, defaults", async () => {
      assert.deepEqual(await rpc(fn("add"), { a: 1 }), { status: 200, json: 11, text: "11" });
      assert.equal((await rpc(fn("add"), { a: 1, b: 2 })).json, 3);
      assert.equal((await rpc(fn("add"), { b: 2, a: "5" })).json, 7); // strings are cast
      assert.deepEqual(await rpc(fn("add"), { a: null }), { status: 200, json: null, text: "null" });
    });

    await t.step("jsonb and array arguments", async () => {
      const payload = { nested: { list: [1, "two", null] }, flag: true };
      assert.deepEqual((await rpc(fn("echo_jsonb"), { payload })).json, { payload, note: null });
      assert.deepEqual((await rpc(fn("echo_jsonb"), { payload: "just text", note: "n" })).json, {
        payload: "just text",
        note: "n",
      });
      const ids = [crypto.randomUUID(), crypto.randomUUID()];
      const tags = ['quo"te', "back\\slash", "comma,brace}", null];
      assert.deepEqual((await rpc(fn("arrays"), { ids, tags, nums: [1, "2", 40] })).json, {
        ids,
        tags,
        sum: 43,
      });
    });

    await t.step("setof, returns table, OUT parameter and composite results", async () => {
      assert.deepEqual((await rpc(fn("series"), { n: 3 })).json, [1, 2, 3]);
      assert.deepEqual((await rpc(fn("series"), { n: 0 })).json, []);
      assert.deepEqual((await rpc(fn("table"), { n: 2 })).json, [
        { i: 1, label: "row 1" },
        { i: 2, label: "row 2" },
      ]);
      assert.deepEqual((await rpc(fn("one_out"), {})).json, { total: 42 });
      assert.deepEqual((await rpc(fn("item"), { id: 7 })).json, { id: 7 });
    });

    await t.step("void returns 204 without a body, for an empty or {} body", async () => {
      assert.deepEqual(await rpc(fn("nothing"), {}), { status: 204, json: undefined, text: "" });
      assert.equal((await rpc(fn("nothing"), "")).status, 204);
    });

    await t.step("overloads are told apart by argument names", async () => {
      assert.equal((await rpc(fn("pick"), { a: 1 })).json, "int");
      assert.equal((await rpc(fn("pick"), { b: "x" })).json, "text");
    });

    await t.step("the role and claims come from the JWT", async () => {
      const anon = (await rpc(fn("whoami"), {})).json as Json;
      assert.equal(anon.current_user, "anon");
      assert.equal(anon.role, "anon");
      assert.equal(anon.method, "POST");
      assert.equal(anon.path, `/rpc/${fn("whoami")}`);
      // The platform's per-role timeouts (bootstrap.sql) hold as they would after a login.
      assert.equal(anon.statement_timeout, "3s");

      const noCredentials = (await rpc(fn("whoami"), {}, {})).json as Json;
      assert.equal(noCredentials.current_user, "anon");
      assert.deepEqual(noCredentials.claims, { role: "anon" });

      const user = (await rpc(fn("whoami"), {}, {
        apikey: ANON_KEY,
        authorization: `Bearer ${userToken}`,
      })).json as Json;
      assert.equal(user.current_user, "authenticated");
      assert.equal(user.role, "authenticated");
      assert.equal(user.uid, userId);
      assert.equal((user.claims as Json).sub, userId);
      assert.equal(user.statement_timeout, "8s");

      const service = (await rpc(fn("whoami"), {}, {
        apikey: SERVICE_ROLE_KEY,
        authorization: `Bearer ${SERVICE_ROLE_KEY}`,
      })).json as Json;
      assert.equal(service.current_user, "service_role");
      assert.equal(service.role, "service_role");

      // Without Authorization, the apikey header is the JWT.
      const apikeyOnly = (await rpc(fn("whoami"), {}, { apikey: SERVICE_ROLE_KEY })).json as Json;
      assert.equal(apikeyOnly.current_user, "service_role");
    });

    await t.step("supabase-js .rpc() works unmodified", async () => {
      const options = { auth: { persistSession: false, autoRefreshToken: false } };
      const anon = createClient(base, ANON_KEY, options);
      assert.deepEqual(await anon.rpc(fn("add"), { a: 2 }).then((r) => [r.data, r.error]), [12, null]);
      const { data: rows } = await anon.rpc(fn("table"), { n: 1 });
      assert.deepEqual(rows, [{ i: 1, label: "row 1" }]);
      const { data: nothing, error: noError, status } = await anon.rpc(fn("nothing"));
      assert.deepEqual([nothing, noError, status], [null, null, 204]);
      const { error } = await anon.rpc(fn("fail"));
      assert.equal(error?.code, "P0001");
      assert.equal(error?.message, "not enough credits");

      const service = createClient(base, SERVICE_ROLE_KEY, options);
      const { data: who } = await service.rpc(fn("whoami"));
      assert.equal((who as Json).current_user, "service_role");
    });

    await t.step("functions created after start are found", async () => {
      const late = fn("late");
      assert.equal((await rpc(late, {})).status, 404);
      await admin.unsafe(`create function public.${late}() returns text language sql as $$ select 'late' $$`);
      await admin.unsafe(grantSql);
      assert.deepEqual((await rpc(late, {})).json, "late");
    });

    await t.step("not found, bad body, wrong method", async () => {
      assert.deepEqual(await rpc(fn("missing"), { x: 1, a: 2 }).then((r) => [r.status, r.json]), [404, {
        code: "PGRST202",
        message: `Could not find the function public.${fn("missing")}(a, x) in the schema cache`,
        details: `Searched for the function public.${
          fn("missing")
        } with parameters a, x, but no matches were found in the schema cache.`,
        hint: null,
      }]);
      // Known function, unknown argument, or a required argument left out.
      assert.equal((await rpc(fn("add"), { a: 1, c: 2 })).status, 404);
      assert.equal((await rpc(fn("add"), { b: 1 })).status, 404);

      const bad = await rpc(fn("add"), "{not json");
      assert.equal(bad.status, 400);
      assert.equal((bad.json as Json).code, "PGRST102");

      const get = await fetch(`${base}/rest/v1/rpc/${fn("add")}?a=1`, { headers: { apikey: ANON_KEY } });
      assert.equal(get.status, 405);
      await get.body?.cancel();

      const elsewhere = await fetch(`${base}/rest/v1/${fn("items")}`);
      assert.equal(elsewhere.status, 404);
      await elsewhere.body?.cancel();
    });

    await t.step("bad and expired JWTs are 401 with PostgREST's codes", async () => {
      const forged = await signJwt({ role: "service_role" }, "not-the-secret-but-long-enough-to-look-real");
      const invalid = await rpc(fn("whoami"), {}, { apikey: ANON_KEY, authorization: `Bearer ${forged}` });
      assert.equal(invalid.status, 401);
      assert.equal((invalid.json as Json).code, "PGRST301");

      const garbage = await rpc(fn("whoami"), {}, { authorization: "Bearer not-a-jwt" });
      assert.equal(garbage.status, 401);
      assert.equal((garbage.json as Json).code, "PGRST301");

      const expiredToken = await signJwt(
        { role: "authenticated", sub: userId, exp: Math.floor(Date.now() / 1000) - 3600 },
        JWT_SECRET,
      );
      const expired = await rpc(fn("whoami"), {}, { authorization: `Bearer ${expiredToken}` });
      assert.deepEqual([expired.status, expired.json], [401, {
        code: "PGRST303",
        message: "JWT expired",
        details: null,
        hint: null,
      }]);
    });

    await t.step("PostgreSQL errors keep code, message, details, hint and map to statuses", async () => {
      assert.deepEqual(await rpc(fn("fail"), {}).then((r) => [r.status, r.json]), [400, {
        code: "P0001",
        message: "not enough credits",
        details: "balance is 0",
        hint: "recharge first",
      }]);

      const anonDenied = await rpc(fn("service_only"), {});
      assert.equal(anonDenied.status, 401);
      assert.equal((anonDenied.json as Json).code, "42501");
      const userDenied = await rpc(fn("service_only"), {}, { authorization: `Bearer ${userToken}` });
      assert.equal(userDenied.status, 403);
      assert.equal((userDenied.json as Json).code, "42501");
      const allowed = await rpc(fn("service_only"), {}, { authorization: `Bearer ${SERVICE_ROLE_KEY}` });
      assert.deepEqual([allowed.status, allowed.json], [200, "secret stuff"]);

      assert.equal((await rpc(fn("insert_item"), { id: 1 })).status, 204);
      const duplicate = await rpc(fn("insert_item"), { id: 1 });
      assert.equal(duplicate.status, 409);
      assert.equal((duplicate.json as Json).code, "23505");
      assert.match(String((duplicate.json as Json).details), /already exists/);

      const custom = await rpc(fn("payment_required"), {});
      assert.equal(custom.status, 402);
      assert.equal((custom.json as Json).message, "pay first");
    });

    await t.step("a failed call rolls back its transaction", async () => {
      await admin.unsafe(`
        create function public.${fn("insert_then_fail")}(id int) returns void
        language plpgsql as $$
        begin
          insert into public.${fn("items")} (id) values (id);
          raise exception 'undo it';
        end
        $$`);
      await admin.unsafe(grantSql);
      assert.equal((await rpc(fn("insert_then_fail"), { id: 99 })).status, 400);
      const [{ count }] = await admin.unsafe(
        `select count(*)::int as count from public.${fn("items")} where id = 99`,
      );
      assert.equal(count, 0);
    });

    await t.step("functions relay: path, query, method, headers, body and status pass through", async () => {
      const res = await fetch(`${base}/functions/v1/echo/sub/path?x=1&y=two`, {
        method: "PUT",
        headers: { authorization: `Bearer ${ANON_KEY}`, "x-custom": "kept" },
        body: "raw body",
      });
      assert.equal(res.status, 201);
      assert.equal(res.headers.get("x-from-function"), "yes");
      assert.deepEqual(await res.json(), {
        method: "PUT",
        path: "/echo/sub/path",
        query: "?x=1&y=two",
        body: "raw body",
        authorization: `Bearer ${ANON_KEY}`,
        custom: "kept",
      });
    });

    await t.step("functions relay streams the response instead of buffering it", async () => {
      const res = await fetch(`${base}/functions/v1/echo/stream`, {
        headers: { authorization: `Bearer ${ANON_KEY}` },
      });
      assert.equal(res.headers.get("content-type"), "text/event-stream");
      assert.ok(res.body);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const first = await Promise.race([
        reader.read(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("first chunk was held back")), 5000);
        }),
      ]).finally(() => clearTimeout(timer));
      assert.equal(first.value, "first;");
      releaseSecondChunk();
      let rest = "";
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) rest += chunk.value;
      assert.equal(rest, "second");
    });

    await t.step("functions relay: verify_jwt on by default, off where config.toml says so", async () => {
      for (const name of ["echo", "guarded"]) {
        const missing = await fetch(`${base}/functions/v1/${name}`, { method: "POST" });
        assert.deepEqual([missing.status, await missing.json()], [401, {
          msg: "Missing authorization header",
        }]);
        const expiredToken = await signJwt({ role: "anon", exp: 1 }, JWT_SECRET);
        for (const token of ["garbage", expiredToken]) {
          const invalid = await fetch(`${base}/functions/v1/${name}`, {
            method: "POST",
            headers: { authorization: `Bearer ${token}` },
          });
          assert.deepEqual([invalid.status, await invalid.json()], [401, { msg: "Invalid JWT" }]);
        }
      }
      const open = await fetch(`${base}/functions/v1/open`, { method: "POST", body: "{}" });
      assert.equal(open.status, 201);
      assert.equal(((await open.json()) as Json).path, "/open");

      const unknown = await fetch(`${base}/functions/v1/nope`, {
        headers: { authorization: `Bearer ${ANON_KEY}` },
      });
      assert.equal(unknown.status, 404);
      await unknown.body?.cancel();
    });

    await t.step("supabase-js functions.invoke works unmodified", async () => {
      const client = createClient(base, ANON_KEY, {
        auth: { persistSession: false, autoRefreshToken: false },
      });
      const { data, error } = await client.functions.invoke("echo", { body: { hello: "world" } });
      assert.equal(error, null);
      assert.equal((data as Json).path, "/echo");
      assert.deepEqual(JSON.parse(String((data as Json).body)), { hello: "world" });
    });
  } finally {
    releaseSecondChunk();
    await gateway?.shutdown();
    await upstream.shutdown();
    await Deno.remove(configDir, { recursive: true });
    const drops = await admin.unsafe<{ stmt: string }[]>(`
      select format('drop function %s', p.oid::regprocedure) as stmt
      from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'public' and p.proname like '${prefix}\\_%'
    `);
    for (const { stmt } of drops) await admin.unsafe(stmt);
    await admin.unsafe(`drop table if exists public.${fn("items")}`);
    await admin.end();
  }
});
