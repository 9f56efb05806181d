// verify_jwt in supabase/config.toml: off exactly for the functions that authenticate their
// callers themselves, on for every other. A function authenticates itself when it checks a
// Bearer secret with _shared/bearer-auth.ts (stripe-reconcile, admin-fix-credits through its
// keys.ts) or verifies Stripe's signature (stripe-webhook); create-checkout relies on the
// relay's JWT check. Each function with verify_jwt = false must then refuse, by itself, a
// caller that brings nothing.
import assert from "node:assert/strict";
import { parse } from "smol-toml";
import { stack } from "./_helpers/env.ts";
import { newClient } from "./_helpers/admin-client.ts";

const functionsDir = new URL("../", import.meta.url);
const configToml = new URL("../../config.toml", import.meta.url);

/** The known self-authenticating functions: the detection below must find at least these. */
const KNOWN_SELF_AUTHENTICATING = ["admin-fix-credits", "stripe-reconcile", "stripe-webhook"];

function functionNames(): string[] {
  const names: string[] = [];
  for (const entry of Deno.readDirSync(functionsDir)) {
    if (!entry.isDirectory || entry.name.startsWith("_") || entry.name === "tests") continue;
    try {
      Deno.statSync(new URL(`${entry.name}/index.ts`, functionsDir));
      names.push(entry.name);
    } catch {
      // Not a function.
    }
  }
  return names.sort();
}

function sourceOf(name: string): string {
  return [...Deno.readDirSync(new URL(`${name}/`, functionsDir))]
    .filter((entry) => entry.isFile && entry.name.endsWith(".ts"))
    .map((entry) => Deno.readTextFileSync(new URL(`${name}/${entry.name}`, functionsDir)))
    .join("\n");
}

function authenticatesItself(name: string): boolean {
  const source = sourceOf(name);
  return /from "\.\.\/_shared\/bearer-auth\.ts"/.test(source) || /\.constructEventAsync\(/.test(source);
}

function verifyJwtSettings(): Map<string, unknown> {
  const config = parse(Deno.readTextFileSync(configToml));
  const sections = config.functions;
  const settings = new Map<string, unknown>();
  if (typeof sections === "object" && sections !== null && !Array.isArray(sections)) {
    for (const [name, section] of Object.entries(sections)) {
      if (typeof section === "object" && section !== null && !Array.isArray(section)) {
        settings.set(name, "verify_jwt" in section ? section.verify_jwt : undefined);
      }
    }
  }
  return settings;
}

Deno.test("config.toml turns verify_jwt off exactly for the functions that authenticate themselves", () => {
  const names = functionNames();
  const selfAuthenticating = names.filter(authenticatesItself);
  for (const name of KNOWN_SELF_AUTHENTICATING) {
    assert.ok(selfAuthenticating.includes(name), `${name} is found to authenticate itself`);
  }
  const settings = verifyJwtSettings();
  const jwtOff = [...settings].filter(([, value]) => value === false).map(([name]) => name).sort();
  assert.deepEqual(jwtOff, selfAuthenticating);
  for (const name of names.filter((n) => !selfAuthenticating.includes(n))) {
    // Absent means the CLI's default, true; anything else must say true.
    assert.ok(settings.get(name) === true || settings.get(name) === undefined, `${name} keeps verify_jwt on`);
  }
  assert.equal(settings.get("create-checkout"), true);
  assert.equal(settings.get("admin-fix-credits"), false);
  for (const name of selfAuthenticating) assert.ok(names.includes(name));
});

Deno.test("every function with verify_jwt = false refuses a caller without credentials by itself", async () => {
  const settings = verifyJwtSettings();
  for (const [name, value] of settings) {
    if (value !== false) continue;
    const response = await fetch(stack.functionUrl(name), {
      method: "POST",
      headers: { "content-type": "application/json", "x-forwarded-for": newClient() },
      body: "{}",
    });
    const body = await response.json();
    assert.ok([400, 401].includes(response.status), `${name} answered ${response.status}`);
    // The function's own answer ({error}), not the relay's ({msg}).
    assert.equal(typeof body.error, "string", `${name}: ${JSON.stringify(body)}`);
  }
  const relay = await fetch(stack.functionUrl("create-checkout"), { method: "POST", body: "{}" });
  assert.equal(relay.status, 401);
  assert.deepEqual(
    await relay.json(),
    { msg: "Missing authorization header" },
    "the relay refuses create-checkout",
  );
});
