// Exactly-once under Stripe's real delivery behaviour: the same event many times at once,
// and many events delivered several times each, shuffled, concurrently, some failing first.
import assert from "node:assert/strict";
import { createUser, invariantViolations, ledgerState, withDb } from "./_helpers/db.ts";
import { checkoutEvent, deliver, type StripeEvent } from "./_helpers/stripe-events.ts";
import { runPool, seededRandom, shuffle } from "./_helpers/concurrency.ts";

Deno.test("the same event delivered 50 times in parallel credits once", async () => {
  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const event = checkoutEvent("checkout.session.completed", { userId, credits: 777 });
    const responses = await Promise.all(Array.from({ length: 50 }, () => deliver(event)));

    assert.deepEqual(responses.map((r) => r.status), Array(50).fill(200));
    assert.equal(responses.filter((r) => r.body.duplicate === false).length, 1);
    const state = await ledgerState(sql, userId);
    assert.equal(state.balance, 777n);
    assert.equal(state.entries, 1);
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
  });
});

Deno.test("a new buyer's first 8 sessions delivered at once: each credited once, one balance", async () => {
  await withDb(async (sql) => {
    // No balance row exists yet: the 8 first entries race to create it (apply_ledger_entry).
    for (let round = 0; round < 5; round++) {
      const userId = await createUser(sql);
      const events = Array.from(
        { length: 8 },
        (_, i) => checkoutEvent("checkout.session.completed", { userId, credits: 10 + i }),
      );
      const responses = await Promise.all(events.map((event) => deliver(event)));

      assert.deepEqual(responses.map((r) => `${r.status} ${r.body.status}`), Array(8).fill("200 processed"));
      const state = await ledgerState(sql, userId);
      assert.equal(state.balance, 108n, `round ${round}: 10 + 11 + ... + 17`);
      assert.equal(state.totalRecharged, 108n, `round ${round}`);
      assert.equal(state.entries, 8, `round ${round}`);
      assert.deepEqual(await invariantViolations(sql, [userId]), [], `round ${round}`);
    }
  });
});

Deno.test("200 events delivered 1-5 times each, shuffled, 8 at a time, some failing first: all credited once", async () => {
  const seed = 20261126;
  const random = seededRandom(seed);
  await withDb(async (sql) => {
    const users = await Promise.all(Array.from({ length: 20 }, () => createUser(sql)));
    // Buyers whose account does not exist yet: their deliveries fail until it is created.
    const lateUsers = Array.from({ length: 5 }, () => crypto.randomUUID());

    const events: StripeEvent[] = [];
    const expected = new Map<string, bigint>();
    for (let i = 0; i < 200; i++) {
      const userId = i % 5 === 0 ? lateUsers[i % lateUsers.length] : users[i % users.length];
      const paid = random() < 0.9;
      const credits = 1 + Math.floor(random() * 1000);
      events.push(checkoutEvent("checkout.session.completed", {
        userId,
        credits,
        paymentStatus: paid ? "paid" : "unpaid",
      }));
      if (paid) expected.set(userId, (expected.get(userId) ?? 0n) + BigInt(credits));
    }

    const deliveries = shuffle(
      events.flatMap((event) => Array(1 + Math.floor(random() * 5)).fill(event)),
      random,
    );
    const firstRound = await runPool(deliveries.map((event) => () => deliver(event)), 8);
    const failedIds = new Set(deliveries.filter((_, i) => firstRound[i].status !== 200).map((e) => e.id));
    assert.ok(failedIds.size >= 1, `seed ${seed}: some first attempts fail`);
    assert.ok(
      firstRound.every((r) => r.status === 200 || r.status === 500),
      `seed ${seed}: only 200 or 500`,
    );

    // The late accounts appear; Stripe keeps retrying what was not acknowledged.
    for (const userId of lateUsers) {
      await sql`insert into auth.users (id, email) values (${userId}, ${`late-${userId}@test.local`})`;
    }
    const retries = events.filter((event) => failedIds.has(event.id));
    const secondRound = await runPool(shuffle(retries, random).map((event) => () => deliver(event)), 8);
    assert.deepEqual(secondRound.map((r) => r.status), Array(retries.length).fill(200), `seed ${seed}`);

    const everyone = [...users, ...lateUsers];
    for (const userId of everyone) {
      const state = await ledgerState(sql, userId);
      assert.equal(state.balance, expected.get(userId) ?? 0n, `seed ${seed}: balance of ${userId}`);
      assert.equal(state.totalRecharged, expected.get(userId) ?? 0n, `seed ${seed}: total of ${userId}`);
    }
    assert.deepEqual(await invariantViolations(sql, everyone), [], `seed ${seed}`);
    const [{ unfinished }] =
      await sql`select count(*)::int as unfinished from credit_private.stripe_webhook_event
      where event_id in ${sql(events.map((e) => e.id))} and status not in ('processed', 'ignored')`;
    assert.equal(unfinished, 0, `seed ${seed}: every delivery ends processed`);
  });
});
