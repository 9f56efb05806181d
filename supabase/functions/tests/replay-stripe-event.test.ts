// public.replay_stripe_event through the Data API, as the admin endpoint will call it: a
// stored event that failed is re-run once its cause is fixed, exactly once, even when
// replayed many times at once.
import assert from "node:assert/strict";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { stack } from "./_helpers/env.ts";
import { createUser, inboxRow, invariantViolations, ledgerState, withDb } from "./_helpers/db.ts";
import { checkoutEvent, deliver } from "./_helpers/stripe-events.ts";

const admin = createAdminClient(stack.url, stack.serviceRoleKey);

Deno.test("a failed event is replayed once its user exists, and credited exactly once", async () => {
  await withDb(async (sql) => {
    const userId = crypto.randomUUID();
    const event = checkoutEvent("checkout.session.completed", { userId, credits: 77 });
    assert.equal((await deliver(event)).status, 500);
    assert.equal((await inboxRow(sql, event.id)).status, "failed");

    // Still failing: the replay says so and keeps it failed.
    const early = await admin.rpc("replay_stripe_event", { event_id: event.id });
    assert.equal(early.error, null);
    assert.equal(early.data.status, "failed");
    assert.equal(early.data.error_code, "CR003");

    await sql`insert into auth.users (id, email) values (${userId}, ${`replay-${userId}@test.local`})`;
    const replays = await Promise.all(
      Array.from({ length: 10 }, () => admin.rpc("replay_stripe_event", { event_id: event.id })),
    );
    assert.ok(replays.every((r) => r.error === null));
    assert.equal(replays.filter((r) => r.data.replayed).length, 1);
    assert.ok(replays.every((r) => r.data.status === "processed"));
    assert.equal((await ledgerState(sql, userId)).balance, 77n);
    assert.equal((await inboxRow(sql, event.id)).status, "processed");
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
  });
});

Deno.test("replay of an unknown event is a 404; clients cannot replay at all", async () => {
  const unknown = await admin.rpc("replay_stripe_event", { event_id: "evt_does_not_exist" });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.error?.code, "PT404");

  await withDb(async (sql) => {
    const userId = await createUser(sql);
    const event = checkoutEvent("checkout.session.completed", { userId, credits: 5 });
    await deliver(event);
    const anon = await fetch(`${stack.url}/rest/v1/rpc/replay_stripe_event`, {
      method: "POST",
      headers: { apikey: stack.anonKey, "content-type": "application/json" },
      body: JSON.stringify({ event_id: event.id }),
    });
    assert.equal(anon.status, 401);
    await anon.body?.cancel();
  });
});
