// Every repair action of admin-fix-credits, through the gateway with the admin key, on
// inconsistencies built on purpose: the answer says what was found and changed, the database
// shows it, a dry run changes nothing, a second run has nothing to do, and each call leaves
// its audit row (key name, action, params, outcome) linked to the repair log.
import assert from "node:assert/strict";
import { createUser, inboxRow, invariantViolations, ledgerState, type Sql, withDb } from "./_helpers/db.ts";
import { checkoutEvent, deliver } from "./_helpers/stripe-events.ts";
import {
  auditRows,
  callAdmin,
  fingerprint,
  type Json,
  newClient,
  orphan,
  paidUser,
  rechargeEntries,
} from "./_helpers/admin-client.ts";

const targets = (result: Json): string[] => result.changes.map((change: Json) => change.target_id);

async function repairLogOf(sql: Sql, runId: string) {
  return await sql`select action, target_id, dry_run, actor, reason from credit_private.repair_log
    where run_id = ${runId} order by id`;
}

Deno.test("fix_specific_recharge: a deleted recharge entry comes back, once; dry run first", async () => {
  await withDb(async (sql) => {
    const { userId, rechargeId } = await paidUser(sql, 100);
    await orphan(sql, rechargeId);
    assert.equal(await rechargeEntries(sql, rechargeId), 0);
    const client = newClient();
    const body = { action: "fix_specific_recharge", rechargeId };

    const before = await fingerprint(sql, { repairLog: false });
    const dry = await callAdmin({ ...body, dryRun: true }, { client });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual(
      { action: dry.body.action, dryRun: dry.body.dryRun, found: dry.body.found, changed: dry.body.changed },
      { action: "fix_specific_recharge", dryRun: true, found: 1, changed: 0 },
    );
    assert.deepEqual(targets(dry.body.result), [rechargeId]);
    assert.equal(dry.body.result.dry_run, true);
    assert.equal(await fingerprint(sql, { repairLog: false }), before, "a dry run changes nothing");
    assert.equal(await rechargeEntries(sql, rechargeId), 0);

    const real = await callAdmin(body, { client });
    assert.equal(real.status, 200, JSON.stringify(real.body));
    assert.equal(real.body.dryRun, false, "dryRun defaults to false");
    assert.equal(real.body.found, 1);
    assert.equal(real.body.changed, 1);
    assert.deepEqual(targets(real.body.result), [rechargeId]);
    assert.equal(real.body.result.actor, "default", "the actor is the key's name");
    assert.equal(real.body.result.reason, "admin-fix-credits fix_specific_recharge");
    assert.equal(await rechargeEntries(sql, rechargeId), 1);
    assert.equal((await ledgerState(sql, userId)).balance, 100n);
    assert.deepEqual(await invariantViolations(sql, [userId]), []);

    const again = await callAdmin(body, { client });
    assert.equal(again.status, 200);
    assert.equal(again.body.found, 0);
    assert.equal(again.body.changed, 0);
    assert.equal(again.body.result.nothing_to_do, true);
    assert.equal(await rechargeEntries(sql, rechargeId), 1);

    const audit = await auditRows(sql, client);
    assert.deepEqual(
      audit.map((row) => [row.key_name, row.action, row.params, row.dry_run, row.outcome, row.http_status]),
      [
        ["default", "fix_specific_recharge", { rechargeId }, true, "ok", 200],
        ["default", "fix_specific_recharge", { rechargeId }, false, "ok", 200],
        ["default", "fix_specific_recharge", { rechargeId }, false, "ok", 200],
      ],
    );
    assert.deepEqual(audit.map((row) => [Number(row.found), Number(row.changed)]), [[1, 0], [1, 1], [0, 0]]);
    assert.equal(audit[1].run_id, real.body.result.run_id);
    assert.equal(audit[1].reason, "admin-fix-credits fix_specific_recharge");
    assert.ok(audit.every((row) => row.finished_at !== null));
    assert.deepEqual(
      (await repairLogOf(sql, real.body.result.run_id)).map((row) => ({ ...row })),
      [{
        action: "fix_orphaned_recharges",
        target_id: rechargeId,
        dry_run: false,
        actor: "default",
        reason: "admin-fix-credits fix_specific_recharge",
      }],
    );
  });
});

Deno.test("fix_orphaned_recharges back-fills every orphan, with the reason given", async () => {
  await withDb(async (sql) => {
    const first = await paidUser(sql, 30);
    const second = await paidUser(sql, 70);
    await orphan(sql, first.rechargeId);
    await orphan(sql, second.rechargeId);
    const client = newClient();
    const reason = "INC-4242 webhook outage";

    const before = await fingerprint(sql, { repairLog: false });
    const dry = await callAdmin({ action: "fix_orphaned_recharges", dryRun: true, reason }, { client });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.ok(dry.body.found >= 2);
    assert.equal(dry.body.changed, 0);
    for (const { rechargeId } of [first, second]) assert.ok(targets(dry.body.result).includes(rechargeId));
    assert.equal(await fingerprint(sql, { repairLog: false }), before);

    const real = await callAdmin({ action: "fix_orphaned_recharges", reason }, { client });
    assert.equal(real.status, 200, JSON.stringify(real.body));
    assert.ok(real.body.changed >= 2);
    assert.equal(real.body.changed, real.body.result.changed);
    for (const { rechargeId } of [first, second]) assert.equal(await rechargeEntries(sql, rechargeId), 1);
    assert.equal((await ledgerState(sql, first.userId)).balance, 30n);
    assert.equal((await ledgerState(sql, second.userId)).balance, 70n);
    assert.deepEqual(await invariantViolations(sql, [first.userId, second.userId]), []);

    const log = await repairLogOf(sql, real.body.result.run_id);
    assert.ok(log.length >= 2);
    assert.ok(log.every((row) => row.actor === "default" && row.reason === reason && !row.dry_run));
    const audit = await auditRows(sql, client);
    assert.deepEqual(audit.map((row) => [row.action, row.params, row.reason]), [
      ["fix_orphaned_recharges", {}, reason],
      ["fix_orphaned_recharges", {}, reason],
    ]);

    const again = await callAdmin({ action: "fix_orphaned_recharges", reason }, { client });
    assert.equal(again.body.changed, 0);
  });
});

Deno.test("recalculate_balance rewrites one user's balance to the ledger; unknown user is 404", async () => {
  await withDb(async (sql) => {
    const { userId } = await paidUser(sql, 50);
    const bystander = await paidUser(sql, 20);
    await sql`update public.user_credit_balance set balance = 999, total_recharged = 7
      where user_id in (${userId}, ${bystander.userId})`;
    const client = newClient();

    const before = await fingerprint(sql, { repairLog: false });
    const dry = await callAdmin({ action: "recalculate_balance", userId, dryRun: true }, { client });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual([dry.body.found, dry.body.changed], [1, 0]);
    assert.deepEqual(dry.body.result.changes[0].before, { balance: 999, total_recharged: 7 });
    assert.deepEqual(dry.body.result.changes[0].after, { balance: 50, total_recharged: 50 });
    assert.equal(await fingerprint(sql, { repairLog: false }), before);

    const real = await callAdmin({ action: "recalculate_balance", userId }, { client });
    assert.equal(real.status, 200, JSON.stringify(real.body));
    assert.deepEqual([real.body.found, real.body.changed], [1, 1]);
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
    const untouched = await ledgerState(sql, bystander.userId);
    assert.deepEqual([untouched.balance, untouched.totalRecharged], [999n, 7n], "only the named user");

    const unknown = crypto.randomUUID();
    const missing = await callAdmin({ action: "recalculate_balance", userId: unknown }, { client });
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, {
      error: "unknown user: no user and no balance row has this userId",
      code: "not_found",
    });
    const audit = await auditRows(sql, client);
    assert.deepEqual(audit.at(-1)?.params, { userId: unknown });
    assert.deepEqual([audit.at(-1)?.outcome, audit.at(-1)?.http_status], ["not_found", 404]);

    const all = await callAdmin({ action: "recalculate_all_balances" }, { client });
    assert.equal(all.status, 200);
    assert.ok(targets(all.body.result).includes(bystander.userId));
    assert.deepEqual(await invariantViolations(sql, [userId, bystander.userId]), []);
  });
});

Deno.test("recalculate_all_balances fixes every mismatch, including a missing balance row", async () => {
  await withDb(async (sql) => {
    const edited = await paidUser(sql, 40);
    const rowless = await paidUser(sql, 60);
    await sql`update public.user_credit_balance set balance = balance + 5 where user_id = ${edited.userId}`;
    await sql`delete from public.user_credit_balance where user_id = ${rowless.userId}`;

    const before = await fingerprint(sql, { repairLog: false });
    const dry = await callAdmin({ action: "recalculate_all_balances", dryRun: true });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.ok(dry.body.found >= 2);
    assert.equal(dry.body.changed, 0);
    assert.equal(await fingerprint(sql, { repairLog: false }), before);

    const real = await callAdmin({ action: "recalculate_all_balances" });
    assert.equal(real.status, 200, JSON.stringify(real.body));
    for (const { userId } of [edited, rowless]) assert.ok(targets(real.body.result).includes(userId));
    const change = real.body.result.changes.find((c: Json) => c.target_id === rowless.userId);
    assert.deepEqual(change.before, { balance_row: "missing" });
    assert.equal((await ledgerState(sql, edited.userId)).balance, 40n);
    assert.equal((await ledgerState(sql, rowless.userId)).balance, 60n);
    assert.deepEqual(await invariantViolations(sql, [edited.userId, rowless.userId]), []);
  });
});

Deno.test("retry_failed_webhooks: one event by eventId, then every stale one; unknown event is 404", async () => {
  await withDb(async (sql) => {
    // A paid session whose buyer did not exist yet when it arrived: stored as failed.
    const lateUser = crypto.randomUUID();
    const failing = checkoutEvent("checkout.session.completed", { userId: lateUser, credits: 25 });
    assert.equal((await deliver(failing)).status, 500);
    assert.equal((await inboxRow(sql, failing.id)).status, "failed");
    await sql`insert into auth.users (id, email) values (${lateUser}, ${`late-${lateUser}@test.local`})`;
    const client = newClient();

    const before = await fingerprint(sql, { repairLog: false });
    const dry = await callAdmin({ action: "retry_failed_webhooks", eventId: failing.id, dryRun: true }, {
      client,
    });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.deepEqual([dry.body.found, dry.body.changed], [1, 0]);
    assert.equal(
      dry.body.result.changes[0].after.status,
      "processed",
      "the dry run says what the retry would do",
    );
    assert.equal(await fingerprint(sql, { repairLog: false }), before);
    assert.equal((await inboxRow(sql, failing.id)).status, "failed");

    const real = await callAdmin({ action: "retry_failed_webhooks", eventId: failing.id }, { client });
    assert.equal(real.status, 200, JSON.stringify(real.body));
    assert.deepEqual([real.body.found, real.body.changed], [1, 1]);
    assert.equal((await inboxRow(sql, failing.id)).status, "processed");
    assert.equal((await ledgerState(sql, lateUser)).balance, 25n);

    // An event stored but never processed (the function died before its transaction ended
    // and a redelivery never came), older than settings.failed_webhook_age.
    const userId = await createUser(sql);
    const stuck = checkoutEvent("checkout.session.completed", { userId, credits: 35 });
    await sql`insert into credit_private.stripe_webhook_event (event_id, type, payload, received_at, updated_at)
      values (${stuck.id}, ${stuck.type}, ${
      sql.json(stuck)
    }, now() - interval '2 hours', now() - interval '2 hours')`;
    const all = await callAdmin({ action: "retry_failed_webhooks" }, { client });
    assert.equal(all.status, 200, JSON.stringify(all.body));
    assert.ok(targets(all.body.result).includes(stuck.id));
    assert.equal((await inboxRow(sql, stuck.id)).status, "processed");
    assert.equal((await ledgerState(sql, userId)).balance, 35n);
    assert.deepEqual(await invariantViolations(sql, [lateUser, userId]), []);

    const missing = await callAdmin({ action: "retry_failed_webhooks", eventId: "evt_test_missing" }, {
      client,
    });
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, "not_found");
    const audit = await auditRows(sql, client);
    assert.deepEqual(audit.map((row) => [row.params, row.outcome]), [
      [{ eventId: failing.id }, "ok"],
      [{ eventId: failing.id }, "ok"],
      [{}, "ok"],
      [{ eventId: "evt_test_missing" }, "not_found"],
    ]);
  });
});

Deno.test("fix_specific_recharge of an unknown recharge is 404 and changes nothing", async () => {
  await withDb(async (sql) => {
    const client = newClient();
    const before = await fingerprint(sql);
    const rechargeId = crypto.randomUUID();
    const missing = await callAdmin({ action: "fix_specific_recharge", rechargeId }, { client });
    assert.equal(missing.status, 404);
    assert.deepEqual(missing.body, {
      error: "unknown recharge: no credit_recharge has this rechargeId",
      code: "not_found",
    });
    assert.equal(await fingerprint(sql), before);
    const [row] = await auditRows(sql, client);
    assert.deepEqual([row.key_name, row.action, row.params, row.outcome, row.http_status, row.error_code], [
      "default",
      "fix_specific_recharge",
      { rechargeId },
      "not_found",
      404,
      "not_found",
    ]);
  });
});

Deno.test("diagnose names the prepared problems and changes nothing", async () => {
  await withDb(async (sql) => {
    const { userId, rechargeId } = await paidUser(sql, 15);
    await orphan(sql, rechargeId);
    const client = newClient();

    const before = await fingerprint(sql);
    const report = await callAdmin({ action: "diagnose" }, { client });
    assert.equal(report.status, 200, JSON.stringify(report.body));
    assert.equal(report.body.action, "diagnose");
    assert.equal(report.body.changed, 0);
    const counts: Record<string, number> = report.body.result.counts;
    assert.equal(report.body.found, Object.values(counts).reduce((a, b) => a + b, 0));
    assert.ok(counts.orphaned_recharges >= 1);
    assert.ok(
      report.body.result.categories.orphaned_recharges.findings.some((f: Json) =>
        f.recharge_id === rechargeId
      ),
    );
    assert.equal(report.body.result.ok, false);

    const capped = await callAdmin({ action: "diagnose", maxRows: 0 }, { client });
    assert.equal(capped.status, 200);
    assert.deepEqual(capped.body.result.categories.orphaned_recharges.findings, []);
    assert.equal(capped.body.result.counts.orphaned_recharges, counts.orphaned_recharges);
    assert.equal(await fingerprint(sql), before, "a diagnosis changes nothing, not even the repair log");

    const audit = await auditRows(sql, client);
    assert.deepEqual(audit.map((row) => [row.action, row.params, row.dry_run, row.outcome]), [
      ["diagnose", {}, false, "ok"],
      ["diagnose", { maxRows: 0 }, false, "ok"],
    ]);
    assert.equal(Number(audit[0].found), report.body.found);

    const fixed = await callAdmin({ action: "fix_specific_recharge", rechargeId });
    assert.equal(fixed.body.changed, 1);
    assert.deepEqual(await invariantViolations(sql, [userId]), []);
  });
});

Deno.test("fix_all repairs an orphan and a balance mismatch in one call; dry run first", async () => {
  await withDb(async (sql) => {
    const orphaned = await paidUser(sql, 80);
    const drifted = await paidUser(sql, 90);
    await orphan(sql, orphaned.rechargeId);
    await sql`update public.user_credit_balance set balance = 1 where user_id = ${drifted.userId}`;
    const client = newClient();

    const before = await fingerprint(sql, { repairLog: false });
    const dry = await callAdmin({ action: "fix_all", dryRun: true }, { client });
    assert.equal(dry.status, 200, JSON.stringify(dry.body));
    assert.equal(dry.body.changed, 0);
    assert.ok(dry.body.found >= 2);
    assert.deepEqual(
      dry.body.result.steps.map((step: Json) => step.action),
      ["restore_installation", "retry_failed_webhooks", "fix_orphaned_recharges", "recompute_balances"],
    );
    assert.equal(await fingerprint(sql, { repairLog: false }), before);

    const real = await callAdmin({ action: "fix_all", reason: "weekly check" }, { client });
    assert.equal(real.status, 200, JSON.stringify(real.body));
    assert.ok(real.body.changed >= 2);
    assert.ok(targets(real.body.result.steps[2]).includes(orphaned.rechargeId));
    assert.ok(targets(real.body.result.steps[3]).includes(drifted.userId));
    assert.equal(await rechargeEntries(sql, orphaned.rechargeId), 1);
    assert.deepEqual(await invariantViolations(sql, [orphaned.userId, drifted.userId]), []);

    const again = await callAdmin({ action: "fix_all", reason: "weekly check" }, { client });
    assert.equal(again.status, 200);
    assert.ok(!targets(again.body.result.steps[2]).includes(orphaned.rechargeId));
    assert.ok(!targets(again.body.result.steps[3]).includes(drifted.userId));

    const audit = await auditRows(sql, client);
    assert.deepEqual(audit.map((row) => [row.action, row.dry_run, row.reason, row.outcome]), [
      ["fix_all", true, "admin-fix-credits fix_all", "ok"],
      ["fix_all", false, "weekly check", "ok"],
      ["fix_all", false, "weekly check", "ok"],
    ]);
    assert.equal(audit[1].run_id, real.body.result.run_id);
  });
});
