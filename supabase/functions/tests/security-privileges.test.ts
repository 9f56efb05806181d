// Security sweep (issue 7): every table, view and function the package installed in public
// and credit_private, found in the catalog (so what later migrations add is swept too),
// probed as anon, as a signed-in user (own rows and another user's) and as service_role, with
// the refusal each must give. Functions go through the gateway with supabase-js `.rpc()`, as a
// client would call them; tables and views through SQL under `set local role`, as PostgREST
// runs a request (the gateway serves no /rest/v1/<table>).
import assert from "node:assert/strict";
import { createUser, type Sql, withDb } from "./_helpers/db.ts";
import { stack } from "./_helpers/env.ts";
import {
  asRole,
  clientAs,
  type Identity,
  packageFunctions,
  packageRelations,
  quoteIdent,
  sampleArgument,
} from "./_helpers/security.ts";

/** Tables a signed-in user reads, restricted by RLS to the rows whose user_id is theirs. */
const OWN_ROWS_TABLES = ["public.credit_recharge", "public.credit_transaction", "public.user_credit_balance"];
/** The catalogue: any signed-in user reads all of it. */
const SIGNED_IN_TABLES = ["public.credit_packages"];
/** Public functions a signed-in user may call, with what they may return (checked below). */
const CLIENT_FUNCTIONS = ["public.get_checkout_package(package_id uuid)"];

interface Fixture {
  userA: string;
  userB: string;
}

/** Two users with a purchase and a spend each, so that every user-owned table has rows of both. */
async function setup(sql: Sql): Promise<Fixture> {
  const userA = await createUser(sql);
  const userB = await createUser(sql);
  for (const [n, user] of [userA, userB].entries()) {
    const tag = crypto.randomUUID().replaceAll("-", "");
    await sql`select public.handle_stripe_event(${
      sql.json({
        id: `evt_security_${tag}`,
        type: "checkout.session.completed",
        created: 1780000000,
        data: {
          object: {
            id: `cs_security_${tag}`,
            client_reference_id: user,
            payment_status: "paid",
            payment_intent: `pi_security_${tag}`,
            amount_total: 1000,
            currency: "usd",
            metadata: { credits: String(100 + n) },
          },
        },
      })
    })`;
    await sql`select public.spend_credits(${user}, 10, ${`security-${tag}`}, 'security sweep')`;
  }
  return { userA, userB };
}

Deno.test("security: the sweep finds the package's objects", async () => {
  await withDb(async (sql) => {
    const functions = await packageFunctions(sql);
    const relations = await packageRelations(sql);
    assert.ok(
      functions.some((f) => f.signature.startsWith("public.handle_stripe_event(")),
      "public RPCs found",
    );
    assert.ok(functions.filter((f) => f.schema === "credit_private").length >= 20, "private functions found");
    for (const name of [...OWN_ROWS_TABLES, "credit_private.stripe_webhook_event"]) {
      assert.ok(relations.some((r) => r.qualified === name), `${name} found`);
    }
  });
});

Deno.test("security: every public function refuses anon, a signed-in user and another user through the gateway", async () => {
  await withDb(async (sql) => {
    const { userA, userB } = await setup(sql);
    const functions = (await packageFunctions(sql)).filter((f) => f.schema === "public" && !f.returnsTrigger);
    const anon = await clientAs("anon");
    const asA = await clientAs("authenticated", userA);
    const asB = await clientAs("authenticated", userB);
    const problems: string[] = [];
    const probed: string[] = [];

    for (const fn of functions) {
      if (fn.args.some((arg) => arg.name === "")) {
        problems.push(`${fn.signature} has an unnamed argument: PostgREST cannot call it by name, review it`);
        continue;
      }
      // Every argument given, uuids naming user A: A calls about herself, B about A.
      const args = Object.fromEntries(fn.args.map((arg) => [arg.name, sampleArgument(arg.type, userA)]));
      const clientCallable = CLIENT_FUNCTIONS.includes(fn.signature);
      for (
        const [who, client, expectStatus] of [
          ["anon", anon, 401],
          ["user A", asA, clientCallable ? 200 : 403],
          ["user B about user A", asB, clientCallable ? 200 : 403],
        ] as const
      ) {
        const { status, data, error } = await client.rpc(fn.name, args);
        probed.push(`${fn.signature} as ${who}`);
        if (status !== expectStatus || (expectStatus !== 200 && error?.code !== "42501")) {
          problems.push(
            `${fn.signature} as ${who}: HTTP ${status} ${error?.code ?? ""} (expected ${expectStatus}${
              expectStatus === 200 ? "" : " 42501"
            })`,
          );
          continue;
        }
        if (expectStatus === 200) {
          // A client-callable function answers about the caller only, never about user A for B.
          const caller = who === "user A" ? userA : userB;
          const text = JSON.stringify(data);
          if (who !== "user A" && text.includes(userA)) {
            problems.push(`${fn.signature} leaks user A to user B`);
          }
          if (!text.includes(caller)) {
            problems.push(`${fn.signature} as ${who} does not answer about the caller`);
          }
        }
      }
    }
    assert.ok(probed.length >= 30, `probed ${probed.length} calls`);
    assert.deepEqual(problems, []);
  });
});

Deno.test("security: private functions cannot be reached through the API, by any role", async () => {
  await withDb(async (sql) => {
    const { userA } = await setup(sql);
    const functions = await packageFunctions(sql);
    const publicNames = new Set(functions.filter((f) => f.schema === "public").map((f) => f.name));
    const privateFunctions = functions.filter((f) =>
      f.schema === "credit_private" && !publicNames.has(f.name)
    );
    const problems: string[] = [];
    for (const identity of ["anon", "authenticated", "service_role"] as Identity[]) {
      const client = await clientAs(identity, userA);
      for (const fn of privateFunctions) {
        const args = Object.fromEntries(
          fn.args.filter((a) => a.name !== "").map((a) => [a.name, sampleArgument(a.type, userA)]),
        );
        const { status, error } = await client.rpc(fn.name, args);
        if (status !== 404 || error?.code !== "PGRST202") {
          problems.push(
            `${fn.signature} as ${identity}: HTTP ${status} ${error?.code ?? ""} (expected 404 PGRST202)`,
          );
        }
      }
      // Asking for the private schema by name (Content-Profile) is refused too.
      const response = await fetch(`${stack.url}/rest/v1/rpc/handle_stripe_event`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "content-profile": "credit_private",
          apikey: stack.anonKey,
          authorization: `Bearer ${identity === "service_role" ? stack.serviceRoleKey : stack.anonKey}`,
        },
        body: "{}",
      });
      await response.body?.cancel();
      if (response.status !== 406) {
        problems.push(`Content-Profile credit_private as ${identity}: ${response.status}`);
      }
    }
    assert.deepEqual(problems, []);
  });
});

Deno.test("security: no API role may execute a private function, even in SQL", async () => {
  await withDb(async (sql) => {
    const userA = await createUser(sql);
    const functions = (await packageFunctions(sql)).filter((f) =>
      f.schema === "credit_private" && !f.returnsTrigger
    );
    const problems: string[] = [];
    for (const fn of functions) {
      const call = `select ${quoteIdent(fn.schema)}.${quoteIdent(fn.name)}(${
        fn.args.map((a) => `null::${a.type}`).join(", ")
      })`;
      for (const role of ["anon", "authenticated", "service_role"] as Identity[]) {
        const outcome = await asRole(sql, role, userA, call);
        if (outcome.ok || outcome.code !== "42501") {
          problems.push(
            `${fn.signature} as ${role}: ${outcome.ok ? "executed" : outcome.code} (expected 42501)`,
          );
        }
      }
    }
    assert.deepEqual(problems, []);
  });
});

Deno.test("security: every table and view refuses what each API role may not do, and shows only own rows", async () => {
  await withDb(async (sql) => {
    const { userA, userB } = await setup(sql);
    const relations = await packageRelations(sql);
    const problems: string[] = [];
    const refused = async (role: Identity, user: string, what: string, statement: string) => {
      const outcome = await asRole(sql, role, user, statement);
      if (outcome.ok || outcome.code !== "42501") {
        problems.push(`${what} as ${role}: ${outcome.ok ? `allowed (${outcome.count} rows)` : outcome.code}`);
      }
    };

    for (const relation of relations) {
      const name = relation.qualified;
      const first = quoteIdent(relation.columns[0]);
      const reviewed = relation.schema !== "public" || OWN_ROWS_TABLES.includes(name) ||
        SIGNED_IN_TABLES.includes(name);
      if (!reviewed) {
        problems.push(
          `${name} is in the exposed schema public but not reviewed by this sweep: add its expected access`,
        );
      }
      for (const role of ["anon", "authenticated", "service_role"] as Identity[]) {
        // Nobody writes any table or view of the package directly: every write is an RPC.
        await refused(role, userA, `insert into ${name}`, `insert into ${name} default values`);
        await refused(role, userA, `update ${name}`, `update ${name} set ${first} = ${first}`);
        await refused(role, userA, `delete from ${name}`, `delete from ${name}`);
        if (relation.kind === "table") await refused(role, userA, `truncate ${name}`, `truncate ${name}`);

        const readable = relation.schema === "public" && (
          role === "service_role" ||
          (role === "authenticated" && (OWN_ROWS_TABLES.includes(name) || SIGNED_IN_TABLES.includes(name)))
        );
        if (!readable) {
          await refused(role, userA, `select from ${name}`, `select * from ${name} limit 1`);
        }
      }

      // Users: their own rows and never another user's, whoever asks.
      if (OWN_ROWS_TABLES.includes(name)) {
        for (const [me, other] of [[userA, userB], [userB, userA]]) {
          const outcome = await asRole(
            sql,
            "authenticated",
            me,
            `select count(*) filter (where user_id = '${me}')::int as own,
                    count(*) filter (where user_id <> '${me}')::int as others from ${name}`,
          );
          const row = outcome.rows?.[0];
          if (!outcome.ok || !row || Number(row.own) === 0 || Number(row.others) !== 0) {
            problems.push(`${name} as user ${me}: ${JSON.stringify(outcome)} (expected own rows only)`);
          }
          const theirs = await asRole(
            sql,
            "authenticated",
            me,
            `select * from ${name} where user_id = '${other}'`,
          );
          if (!theirs.ok || theirs.count !== 0) {
            problems.push(`${name}: user ${me} selecting user ${other}'s rows got ${JSON.stringify(theirs)}`);
          }
        }
      }
    }
    assert.ok(relations.length >= 6, `swept ${relations.length} relations`);
    assert.deepEqual(problems, []);
  });
});
