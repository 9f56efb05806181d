// spend_credits through supabase-js and the Data API, as a backend calls it: overdraft is
// refused, a repeated key debits once, and many concurrent callers never overdraw.
import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import { createUser, invariantViolations, ledgerState, type Sql, withDb } from "./_helpers/db.ts";
import { checkoutEvent, deliver, refundEvent } from "./_helpers/stripe-events.ts";
import { stack } from "./_helpers/env.ts";

const service = createClient(stack.url, stack.serviceRoleKey, { auth: { persistSession: false } });
const anon = createClient(stack.url, stack.anonKey, { auth: { persistSession: false } });

async function userWithCredits(sql: Sql, credits: number): Promise<string> {
  const userId = await createUser(sql);
  const response = await deliver(checkoutEvent("checkout.session.completed", { userId, credits }));
  assert.equal(response.status, 200);
  return userId;
}

function spend(userId: string, amount: number, key: string) {
  return service.rpc("spend_credits", { user_id: userId, amount, idempotency_key: key, description: "test" });
}

Deno.test("spend_credits debits and reports the balance after", async () => {
  await withDb(async (sql) => {
    const userId = await userWithCredits(sql, 100);
    const { data, error } = await spend(userId, 30, crypto.randomUUID());
    assert.equal(error, null);
    assert.equal(data.amount, 30);
    assert.equal(data.balance_after, 70);
    assert.equal(data.replayed, false);
    assert.equal((await ledgerState(sql, userId)).balance, 70n);
  });
});

Deno.test("an overdraft is refused with code CR001 and writes nothing", async () => {
  await withDb(async (sql) => {
    const userId = await userWithCredits(sql, 10);
    const { data, error } = await spend(userId, 11, crypto.randomUUID());
    assert.equal(data, null);
    assert.equal(error?.code, "CR001");
    assert.equal(error?.message, "insufficient credits");
    assert.deepEqual(await ledgerState(sql, userId), {
      balance: 10n,
      totalRecharged: 10n,
      ledgerSum: 10n,
      rechargeEntries: 10n,
      entries: 1,
    });
  });
});

Deno.test("bad arguments are refused with a message naming the problem", async () => {
  await withDb(async (sql) => {
    const userId = await userWithCredits(sql, 10);
    const { error } = await spend(userId, 0, crypto.randomUUID());
    assert.equal(error?.code, "22023");
    assert.match(error?.message ?? "", /amount must be a positive integer/);
    const unknown = await spend(crypto.randomUUID(), 1, crypto.randomUUID());
    assert.equal(unknown.error?.code, "CR004");
  });
});

Deno.test("the anon key cannot spend", async () => {
  await withDb(async (sql) => {
    const userId = await userWithCredits(sql, 10);
    const { error } = await anon.rpc("spend_credits", { user_id: userId, amount: 1, idempotency_key: "x" });
    assert.equal(error?.code, "42501");
    assert.equal((await ledgerState(sql, userId)).balance, 10n);
  });
});

Deno.test("the same key sent 20 times in parallel debits once and returns the first result", async () => {
  await withDb(async (sql) => {
    const userId = await userWithCredits(sql, 100);
    const key = crypto.randomUUID();
    const results = await Promise.all(Array.from({ length: 20 }, () => spend(userId, 7, key)));
    assert.ok(results.every((r) => r.error === null));
    assert.equal(new Set(results.map((r) => r.data.transaction_id)).size, 1);
    assert.equal(results.filter((r) => r.data.replayed === false).length, 1);
    assert.equal((await ledgerState(sql, userId)).balance, 93n);

    const reused = await spend(userId, 8, key);
    assert.equal(reused.error?.code, "CR002");
  });
});

Deno.test("parallel spends on one user: successes = floor(balance / amount), never negative", async () => {
  await withDb(async (sql) => {
    const userId = await userWithCredits(sql, 1000);
    const results = await Promise.all(
      Array.from({ length: 60 }, () => spend(userId, 37, crypto.randomUUID())),
    );
    const successes = results.filter((r) => r.error === null).length;
    const refusals = results.filter((r) => r.error?.code === "CR001").length;
    assert.equal(successes, Math.floor(1000 / 37));
    assert.equal(refusals, 60 - successes);
    const state = await ledgerState(sql, userId);
    assert.equal(state.balance, BigInt(1000 - successes * 37));
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
  });
});

Deno.test("spending is refused while a clawback keeps the balance negative", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const event = checkoutEvent("checkout.session.completed", { userId, credits: 100, amountCents: 100 });
    await deliver(event);
    assert.equal((await spend(userId, 80, crypto.randomUUID())).error, null);
    await deliver(refundEvent(event.data.object.payment_intent, 100, 100));
    assert.equal((await ledgerState(sql, userId)).balance, -80n);
    assert.equal((await spend(userId, 1, crypto.randomUUID())).error?.code, "CR001");
  });
});
