// admin-fix-credits refuses, and says only what the caller may know: 401 for every caller
// without an admin key (the same answer whatever the cause), 429 with Retry-After after
// repeated failures from one client, 405, 400 naming the problem, 413, and 500 with a stable
// code whose details stay in the log. A refusal changes nothing but its audit row and the
// client's failure counter.
import assert from "node:assert/strict";
import { createAdminFixCreditsHandler } from "../admin-fix-credits/handler.ts";
import { parseAdminKeys } from "../admin-fix-credits/keys.ts";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { stack } from "./_helpers/env.ts";
import { userAccessToken } from "./_helpers/auth.ts";
import { withDb } from "./_helpers/db.ts";
import {
  adminKeys,
  auditRows,
  callAdmin,
  failureRow,
  fingerprint,
  newClient,
  orphan,
  paidUser,
  rechargeEntries,
} from "./_helpers/admin-client.ts";

const UNAUTHORIZED = {
  error: "a valid admin API key is required: Authorization: Bearer <admin-key>",
  code: "unauthorized",
};

Deno.test("no key, a wrong key, the anon key, the service-role key or a user's JWT: 401, nothing done", async () => {
  await withDb(async (sql) => {
    // Work that a real fix_all would do, so that a refusal that acted would show.
    const { rechargeId } = await paidUser(sql, 10);
    await orphan(sql, rechargeId);
    const before = await fingerprint(sql);

    const refused: Array<[string, Record<string, string> | null]> = [
      ["no Authorization header", null],
      ["a wrong key", { authorization: `Bearer ${adminKeys.default.slice(0, -1)}x` }],
      ["the key with a character more", { authorization: `Bearer ${adminKeys.default}0` }],
      ["a prefix of the key", { authorization: `Bearer ${adminKeys.default.slice(0, 20)}` }],
      ["the anon key", { authorization: `Bearer ${stack.anonKey}` }],
      ["the service-role key", { authorization: `Bearer ${stack.serviceRoleKey}` }],
      ["a user's JWT", { authorization: `Bearer ${await userAccessToken(crypto.randomUUID())}` }],
      ["the key without Bearer", { authorization: adminKeys.default }],
      ["the key as Basic", { authorization: `Basic ${adminKeys.default}` }],
      ["the key in apikey only", { apikey: adminKeys.default }],
    ];
    const clients: string[] = [];
    for (const [label, headers] of refused) {
      const client = newClient();
      clients.push(client);
      const response = await callAdmin({ action: "fix_all", dryRun: false }, {
        key: null,
        client,
        headers: headers ?? {},
      });
      assert.equal(response.status, 401, label);
      assert.deepEqual(response.body, UNAUTHORIZED, label);
      assert.equal(response.headers.get("retry-after"), null, label);
    }
    assert.equal(await fingerprint(sql), before, "nothing changed, not even the repair log");
    assert.equal(await rechargeEntries(sql, rechargeId), 0);

    for (const client of clients) {
      const rows = await auditRows(sql, client);
      assert.deepEqual(
        rows.map((row) => [row.key_name, row.action, row.params, row.dry_run, row.outcome, row.http_status]),
        [["unauthenticated", "fix_all", null, null, "unauthorized", 401]],
      );
      assert.equal(Number((await failureRow(sql, client))?.failures), 1);
    }
    // No key appears anywhere in the audit log.
    const [leaks] = await sql`select count(*)::int as n from credit_private.admin_audit_log l
      where l::text like ${`%${adminKeys.default.slice(0, 16)}%`} or l::text like ${`%${
      stack.serviceRoleKey.slice(-16)
    }%`}`;
    assert.equal(leaks.n, 0);

    const fixed = await callAdmin({ action: "fix_specific_recharge", rechargeId });
    assert.equal(fixed.body.changed, 1);
  });
});

Deno.test("repeated failures from one client: 429 with Retry-After, even with the right key, for that client only", async () => {
  await withDb(async (sql) => {
    const [settings] = await sql`select admin_auth_max_failures::int as max,
      extract(epoch from admin_auth_block_duration)::int as block from credit_private.settings`;
    const client = newClient();
    const wrong = { key: "wrong-key-wrong-key-wrong-key-wrong-key", client };

    for (let i = 1; i < settings.max; i++) {
      const response = await callAdmin({ action: "diagnose" }, wrong);
      assert.equal(response.status, 401, `failure ${i}`);
    }
    const blocked = await callAdmin({ action: "diagnose" }, wrong);
    assert.equal(blocked.status, 429, "the failure that reaches the limit is refused as too many");
    const retryAfter = Number(blocked.headers.get("retry-after"));
    assert.ok(retryAfter > settings.block - 10 && retryAfter <= settings.block, `Retry-After ${retryAfter}`);
    assert.deepEqual(blocked.body, {
      error: "too many failed attempts from this client; retry later",
      code: "rate_limited",
      retryAfterSeconds: retryAfter,
    });

    const right = await callAdmin({ action: "diagnose" }, { client });
    assert.equal(right.status, 429, "a blocked client is refused whatever key it sends");
    const other = await callAdmin({ action: "diagnose", maxRows: 0 }, { client: newClient() });
    assert.equal(other.status, 200, "other clients are not affected");

    const counter = await failureRow(sql, client);
    assert.equal(Number(counter?.failures), settings.max, "refusals while blocked do not count or extend");
    assert.ok(counter?.blocked_until > new Date());
    const audit = await auditRows(sql, client);
    assert.deepEqual(audit.map((row) => [row.key_name, row.outcome, row.http_status]), [
      ...Array.from({ length: settings.max - 1 }, () => ["unauthenticated", "unauthorized", 401]),
      ["unauthenticated", "rate_limited", 429],
      ["default", "rate_limited", 429],
    ]);

    // An operator unblocks the client by deleting its row; the right key then works again.
    await sql`delete from credit_private.admin_auth_failure where client = ${client}`;
    const again = await callAdmin({ action: "diagnose", maxRows: 0 }, { client });
    assert.equal(again.status, 200);
  });
});

Deno.test("a right key clears the client's earlier failures", async () => {
  await withDb(async (sql) => {
    const client = newClient();
    for (let i = 0; i < 2; i++) {
      assert.equal((await callAdmin({ action: "diagnose" }, { key: null, client })).status, 401);
    }
    assert.equal(Number((await failureRow(sql, client))?.failures), 2);
    assert.equal((await callAdmin({ action: "diagnose", maxRows: 0 }, { client })).status, 200);
    assert.equal(await failureRow(sql, client), undefined);
  });
});

Deno.test("wrong method 405, bad bodies 400 naming the problem, big bodies 413; nothing done", async () => {
  await withDb(async (sql) => {
    const before = await fingerprint(sql);
    const client = newClient();

    for (const method of ["GET", "PUT", "DELETE", "PATCH"]) {
      const response = await callAdmin({ action: "fix_all" }, { client, method });
      assert.equal(response.status, 405, method);
      assert.equal(response.body.code, "method_not_allowed");
      assert.equal(response.headers.get("allow"), "POST");
    }

    const recharge = crypto.randomUUID();
    const bad: Array<[string, string, RegExp, string]> = [
      ["not JSON", "{", /^body must be JSON/, "invalid_json"],
      ["empty", "", /^body must be JSON/, "invalid_json"],
      ["an array", "[]", /^body must be a JSON object/, "invalid_request"],
      ["no action", "{}", /^action is required: one of diagnose, fix_all, /, "invalid_request"],
      [
        "unknown action",
        '{"action":"drop_everything"}',
        /^unknown action: use one of diagnose, /,
        "unknown_action",
      ],
      ["action not a string", '{"action":42}', /^unknown action/, "unknown_action"],
      [
        "missing rechargeId",
        '{"action":"fix_specific_recharge"}',
        /^invalid fix_specific_recharge request: rechargeId: required \(a uuid\)$/,
        "invalid_request",
      ],
      [
        "rechargeId not a uuid",
        '{"action":"fix_specific_recharge","rechargeId":"abc"}',
        /rechargeId: must be a uuid$/,
        "invalid_request",
      ],
      [
        "snake_case param",
        `{"action":"fix_specific_recharge","recharge_id":"${recharge}"}`,
        /rechargeId: required \(a uuid\); unknown field "recharge_id"$/,
        "invalid_request",
      ],
      [
        "missing userId",
        '{"action":"recalculate_balance"}',
        /userId: required \(a uuid\)$/,
        "invalid_request",
      ],
      [
        "dryRun not a boolean",
        '{"action":"fix_all","dryRun":"yes"}',
        /^invalid fix_all request: dryRun: must be true or false$/,
        "invalid_request",
      ],
      ["blank reason", '{"action":"fix_all","reason":"  "}', /reason: must not be blank$/, "invalid_request"],
      [
        "bad eventId",
        '{"action":"retry_failed_webhooks","eventId":"ch_123"}',
        /eventId: must be a Stripe event id, evt_\.\.\.$/,
        "invalid_request",
      ],
      [
        "param of another action",
        `{"action":"fix_all","rechargeId":"${recharge}"}`,
        /unknown field "rechargeId"$/,
        "invalid_request",
      ],
      [
        "bad reconcile option",
        '{"action":"reconcile_stripe","options":{"maxEvents":0}}',
        /^invalid reconcile_stripe request: options\.maxEvents: /,
        "invalid_request",
      ],
      [
        "dryRun inside reconcile options",
        '{"action":"reconcile_stripe","options":{"dryRun":true}}',
        /unknown field "dryRun"/,
        "invalid_request",
      ],
    ];
    for (const [label, rawBody, message, code] of bad) {
      const response = await callAdmin(null, { client, rawBody });
      assert.equal(response.status, 400, label);
      assert.match(response.body.error, message, label);
      assert.equal(response.body.code, code, label);
    }

    const big = await callAdmin(null, {
      client,
      rawBody: JSON.stringify({ action: "fix_all", reason: "x".repeat(20_000) }),
    });
    assert.equal(big.status, 413);
    assert.equal(big.body.code, "payload_too_large");

    assert.equal(await fingerprint(sql), before);
    const audit = await auditRows(sql, client);
    assert.equal(audit.length, 4 + bad.length + 1);
    assert.deepEqual(
      audit.slice(0, 4).map((row) => [row.key_name, row.method, row.action, row.outcome, row.http_status]),
      ["GET", "PUT", "DELETE", "PATCH"].map((method) => ["default", method, null, "method_not_allowed", 405]),
    );
    assert.deepEqual(
      audit.slice(4).map((row) => [row.outcome, row.http_status]),
      [...bad.map(([, , , code]) => [code, 400]), ["payload_too_large", 413]],
    );
    // A refused body is not stored; a known action is named.
    assert.ok(audit.every((row) => row.params === null));
    assert.equal(audit[4 + 6].action, "fix_specific_recharge");
    assert.equal(
      await failureRow(sql, client),
      undefined,
      "an authenticated caller's bad requests are not failures",
    );
  });
});

/** A handler of the test's own, on the real database, whose db client fails chosen RPCs. */
function handlerFailing(failing: Set<string>, logs: string[]) {
  const db = createAdminClient(stack.url, stack.serviceRoleKey);
  const flaky = new Proxy(db, {
    get(target, property, receiver) {
      if (property !== "rpc") return Reflect.get(target, property, receiver);
      return (fn: string, args: Record<string, unknown>) =>
        // An RPC that does not exist: PostgREST answers 404 PGRST202, as for a dropped function.
        target.rpc(failing.has(fn) ? "admin_test_no_such_function" : fn, args);
    },
  });
  return createAdminFixCreditsHandler({
    keys: parseAdminKeys({ ADMIN_API_KEY: adminKeys.default }),
    db: flaky,
    reconcile: () => Promise.reject(new Error("not used")),
    log: (message) => logs.push(message),
  });
}

function post(body: unknown, client: string, key: string | null = adminKeys.default) {
  return new Request("http://127.0.0.1/admin-fix-credits", {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-forwarded-for": client,
      ...(key === null ? {} : { authorization: `Bearer ${key}` }),
    },
    body: JSON.stringify(body),
  });
}

Deno.test("a database error is 500 with a stable code; details only in the log, audit row completed", async () => {
  await withDb(async (sql) => {
    const logs: string[] = [];
    const handler = handlerFailing(new Set(["fix_all_credits"]), logs);
    const client = newClient();
    const before = await fingerprint(sql);
    const response = await handler(post({ action: "fix_all" }, client));
    assert.equal(response.status, 500);
    assert.deepEqual(await response.json(), {
      error: "fix_all failed (database_error); details are in the function logs",
      code: "database_error",
    });
    assert.equal(await fingerprint(sql), before);
    assert.ok(logs.some((line) => line.includes("PGRST202")), logs.join("\n"));
    const [row] = await auditRows(sql, client);
    assert.deepEqual([row.action, row.outcome, row.http_status, row.error_code], [
      "fix_all",
      "database_error",
      500,
      "database_error",
    ]);
  });
});

Deno.test("no audit row, no action: 500 audit_unavailable and nothing done", async () => {
  await withDb(async (sql) => {
    const { rechargeId } = await paidUser(sql, 5);
    await orphan(sql, rechargeId);
    const logs: string[] = [];
    const handler = handlerFailing(new Set(["log_admin_call"]), logs);
    const before = await fingerprint(sql);
    const response = await handler(post({ action: "fix_specific_recharge", rechargeId }, newClient()));
    assert.equal(response.status, 500);
    assert.equal((await response.json()).code, "audit_unavailable");
    assert.equal(await fingerprint(sql), before);
    assert.equal(await rechargeEntries(sql, rechargeId), 0);

    // The failure counter unavailable: a caller without a key is still refused.
    const counterDown = handlerFailing(new Set(["record_admin_auth_attempt"]), logs);
    const refused = await counterDown(post({ action: "fix_all" }, newClient(), null));
    assert.equal(refused.status, 401);
    const withKey = await counterDown(post({ action: "fix_all" }, newClient()));
    assert.equal(withKey.status, 500);
    assert.equal((await withKey.json()).code, "database_error");
    assert.equal(await rechargeEntries(sql, rechargeId), 0);

    const fixed = await callAdmin({ action: "fix_specific_recharge", rechargeId });
    assert.equal(fixed.body.changed, 1);
  });
});
