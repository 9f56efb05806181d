// The admin keys: how ADMIN_API_KEY and ADMIN_API_KEYS are read and validated (errors name
// the variable and the key's name, never a key), and rotation without downtime. The served
// function's environment is fixed by npm test, so rotation is shown with handlers of the
// test's own, built by the same factory, on the real database: before, during and after the
// overlap of an old and a new key.
import assert from "node:assert/strict";
import { createAdminFixCreditsHandler } from "../admin-fix-credits/handler.ts";
import {
  type AdminKey,
  AdminKeyError,
  authenticate,
  parseAdminKeys,
  supabaseApiKeys,
} from "../admin-fix-credits/keys.ts";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { stack } from "./_helpers/env.ts";
import { withDb } from "./_helpers/db.ts";
import { adminKeys, auditRows, callAdmin, newClient } from "./_helpers/admin-client.ts";

const KEY_A = "a".repeat(31) + "1";
const KEY_B = "b".repeat(40);
const KEY_C = "c-key_with.symbols!#$%&'()*+-./:;<=>?@[]^`{|}~0123";

function refusal(fn: () => unknown, message: RegExp, secrets: string[] = []): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof AdminKeyError);
    assert.match(err.message, message);
    for (const secret of secrets) {
      assert.ok(!err.message.includes(secret), `the message quotes a key: ${err.message}`);
    }
    return true;
  });
}

Deno.test("ADMIN_API_KEY is one key named default; ADMIN_API_KEYS holds named keys in two forms", () => {
  assert.deepEqual(parseAdminKeys({ ADMIN_API_KEY: KEY_A }), [{ name: "default", key: KEY_A }]);
  assert.deepEqual(parseAdminKeys({ ADMIN_API_KEYS: JSON.stringify({ "ops-2026": KEY_B, ci: KEY_C }) }), [
    { name: "ops-2026", key: KEY_B },
    { name: "ci", key: KEY_C },
  ]);
  assert.deepEqual(parseAdminKeys({ ADMIN_API_KEYS: ` ops-2026:${KEY_B} , ci:${KEY_C}` }), [
    { name: "ops-2026", key: KEY_B },
    { name: "ci", key: KEY_C },
  ]);
  assert.deepEqual(parseAdminKeys({ ADMIN_API_KEY: KEY_A, ADMIN_API_KEYS: `next:${KEY_B}` }), [
    { name: "default", key: KEY_A },
    { name: "next", key: KEY_B },
  ]);
  assert.deepEqual(parseAdminKeys({ ADMIN_API_KEY: "", ADMIN_API_KEYS: `next:${KEY_B}` }), [
    { name: "next", key: KEY_B },
  ]);
});

Deno.test("bad key configurations fail at start with a message that never quotes a key", () => {
  refusal(() => parseAdminKeys({}), /set ADMIN_API_KEY \(one key\) or ADMIN_API_KEYS/);
  refusal(() => parseAdminKeys({ ADMIN_API_KEY: " ", ADMIN_API_KEYS: "" }), /set ADMIN_API_KEY/);
  const short = "short-secret-value-1234";
  refusal(
    () => parseAdminKeys({ ADMIN_API_KEY: short }),
    /ADMIN_API_KEY: the key named "default" must be 32 to 512/,
    [
      short,
    ],
  );
  refusal(
    () => parseAdminKeys({ ADMIN_API_KEYS: `{"ops": "${KEY_B}", oops}` }),
    /ADMIN_API_KEYS is not valid JSON/,
    [KEY_B],
  );
  refusal(() => parseAdminKeys({ ADMIN_API_KEYS: `["${KEY_B}"]` }), /must be a JSON object/, [KEY_B]);
  refusal(() => parseAdminKeys({ ADMIN_API_KEYS: `{"ops": 12345}` }), /the key named "ops" is not a string/);
  refusal(() => parseAdminKeys({ ADMIN_API_KEYS: `ops:${KEY_B},${KEY_A}` }), /entry 2 is not name:key/, [
    KEY_B,
    KEY_A,
  ]);
  refusal(
    () => parseAdminKeys({ ADMIN_API_KEYS: `ops:${KEY_B},ops:${KEY_C}` }),
    /the key name "ops" is used twice/,
    [KEY_B, KEY_C],
  );
  refusal(
    () => parseAdminKeys({ ADMIN_API_KEY: KEY_A, ADMIN_API_KEYS: `default:${KEY_B}` }),
    /the key name "default" is used twice/,
  );
  refusal(
    () => parseAdminKeys({ ADMIN_API_KEY: KEY_A, ADMIN_API_KEYS: `copy:${KEY_A}` }),
    /the keys named "default" and "copy" are the same key/,
    [KEY_A],
  );
  refusal(() => parseAdminKeys({ ADMIN_API_KEYS: `unauthenticated:${KEY_B}` }), /not "unauthenticated"/, [
    KEY_B,
  ]);
  refusal(() => parseAdminKeys({ ADMIN_API_KEYS: `bad name:${KEY_B}` }), /key names are 1-64 letters/, [
    KEY_B,
  ]);
  refusal(
    () => parseAdminKeys({ ADMIN_API_KEYS: JSON.stringify({ ops: `${KEY_B} with spaces` }) }),
    /printable ASCII without spaces or commas/,
    [KEY_B],
  );
  refusal(
    () => parseAdminKeys({ ADMIN_API_KEY: stack.serviceRoleKey }, [stack.serviceRoleKey, stack.anonKey]),
    /is a Supabase API key/,
    [stack.serviceRoleKey],
  );
  refusal(
    () => parseAdminKeys({ ADMIN_API_KEYS: `anon:${stack.anonKey}` }, [stack.serviceRoleKey, stack.anonKey]),
    /the key named "anon" is a Supabase API key/,
    [stack.anonKey],
  );
});

Deno.test("the project's own API keys, legacy and new, are never accepted as admin keys", () => {
  const env = {
    SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
    SUPABASE_ANON_KEY: stack.anonKey,
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: `sb_secret_${KEY_B}` }),
    SUPABASE_PUBLISHABLE_KEYS: JSON.stringify({ default: `sb_publishable_${KEY_B}` }),
  };
  const forbidden = supabaseApiKeys(env);
  assert.deepEqual(forbidden, [
    stack.serviceRoleKey,
    stack.anonKey,
    `sb_secret_${KEY_B}`,
    `sb_publishable_${KEY_B}`,
  ]);
  refusal(() => parseAdminKeys({ ADMIN_API_KEY: `sb_secret_${KEY_B}` }, forbidden), /is a Supabase API key/, [
    KEY_B,
  ]);
  assert.deepEqual(supabaseApiKeys({ SUPABASE_SECRET_KEYS: "not json" }), []);
});

function bearer(token: string | null): Request {
  return new Request("http://127.0.0.1/", {
    headers: token === null ? {} : { authorization: `Bearer ${token}` },
  });
}

Deno.test("authenticate names the matching key among all configured keys, or none", async () => {
  const keys: AdminKey[] = [{ name: "one", key: KEY_A }, { name: "two", key: KEY_B }, {
    name: "three",
    key: KEY_C,
  }];
  assert.equal(await authenticate(bearer(KEY_A), keys), "one");
  assert.equal(await authenticate(bearer(KEY_C), keys), "three");
  assert.equal(await authenticate(bearer(`${KEY_B}x`), keys), null);
  assert.equal(await authenticate(bearer(KEY_B.slice(1)), keys), null);
  assert.equal(await authenticate(bearer(null), keys), null);
  assert.equal(await authenticate(bearer(""), keys), null);
  assert.equal(
    await authenticate(new Request("http://127.0.0.1/", { headers: { authorization: KEY_A } }), keys),
    null,
  );
});

Deno.test("rotation: the old and the new key both work during the overlap; a removed key is refused", async () => {
  const oldKey = `old-${crypto.randomUUID()}`;
  const newKey = `new-${crypto.randomUUID()}`;
  const db = createAdminClient(stack.url, stack.serviceRoleKey);
  const handlerWith = (ADMIN_API_KEYS: string) =>
    createAdminFixCreditsHandler({
      keys: parseAdminKeys({ ADMIN_API_KEYS }, [stack.serviceRoleKey, stack.anonKey]),
      db,
      reconcile: () => Promise.reject(new Error("not used")),
    });
  const before = handlerWith(`ops-old:${oldKey}`);
  const overlap = handlerWith(JSON.stringify({ "ops-old": oldKey, "ops-new": newKey }));
  const after = handlerWith(`ops-new:${newKey}`);

  const client = newClient();
  const call = async (handler: ReturnType<typeof handlerWith>, key: string) => {
    const response = await handler(
      new Request("http://127.0.0.1/admin-fix-credits", {
        method: "POST",
        headers: {
          authorization: `Bearer ${key}`,
          "x-forwarded-for": client,
          "content-type": "application/json",
        },
        body: JSON.stringify({ action: "diagnose", maxRows: 0 }),
      }),
    );
    await response.body?.cancel();
    return response.status;
  };

  assert.equal(await call(before, oldKey), 200);
  assert.equal(await call(before, newKey), 401, "the new key is not valid before it is deployed");
  assert.equal(await call(overlap, oldKey), 200);
  assert.equal(await call(overlap, newKey), 200);
  assert.equal(await call(after, newKey), 200);
  assert.equal(await call(after, oldKey), 401, "the removed key is refused");

  await withDb(async (sql) => {
    assert.deepEqual((await auditRows(sql, client)).map((row) => [row.key_name, row.outcome]), [
      ["ops-old", "ok"],
      ["unauthenticated", "unauthorized"],
      ["ops-old", "ok"],
      ["ops-new", "ok"],
      ["ops-new", "ok"],
      ["unauthenticated", "unauthorized"],
    ]);
  });
});

Deno.test("the served function accepts both configured keys and audits each by its name", async () => {
  const client = newClient();
  const byDefault = await callAdmin({ action: "diagnose", maxRows: 0 }, { client, key: adminKeys.default });
  assert.equal(byDefault.status, 200);
  const byRotated = await callAdmin({ action: "diagnose", maxRows: 0 }, { client, key: adminKeys.rotated });
  assert.equal(byRotated.status, 200);
  await withDb(async (sql) => {
    assert.deepEqual((await auditRows(sql, client)).map((row) => row.key_name), ["default", "rotated-2026"]);
  });
});
