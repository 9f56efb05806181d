// `npm run torture -- --seed N --ops M`: a seeded mix of Stripe deliveries, spends, repairs
// and monitor runs against a running local stack, with faults (client hang-ups, killed
// backends, PostgreSQL crashed and restarted), every answer checked against a reference
// model, and the ledger checked against the model and DESIGN.md's invariants. See README.md.
//
//   deno run -A supabase/functions/tests/torture/main.ts --seed 42 --ops 5000
//
// Prints progress on stderr, then a JSON summary and one final line on stdout; exits 1 with
// the seed and the first operation that diverged when the run does not hold.
import { z } from "zod";
import type { PgControl } from "./faults.ts";
import { Divergence, Torture } from "./runner.ts";

const USAGE = "usage: main.ts --seed N --ops M [--users U] [--checkpoint-every K] [--monitor schema.fn|none]";

function parseArgs(args: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      Deno.exit(0);
    }
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match) throw new Error(`unexpected argument ${arg}\n${USAGE}`);
    const value = match[2] ?? args[++i];
    if (value === undefined) throw new Error(`--${match[1]} needs a value\n${USAGE}`);
    out[match[1]] = value;
  }
  return out;
}

const argsSchema = z.strictObject({
  seed: z.coerce.number().int().min(0).max(2 ** 32 - 1),
  ops: z.coerce.number().int().min(1).max(1_000_000),
  users: z.coerce.number().int().min(1).max(10_000).optional(),
  "checkpoint-every": z.coerce.number().int().min(1).optional(),
  monitor: z.string().optional(),
});

const envSchema = z.object({
  SUPABASE_ADMIN_DB_URL: z.string().min(1, "needed to kill backends (supabase_admin)"),
  DB_PORT: z.coerce.number().int().positive(),
  TORTURE_PG_DATA: z.string().optional(),
  TORTURE_PG_LOG: z.string().optional(),
  TORTURE_PG_SOCKET_DIR: z.string().optional(),
  TORTURE_PG_BIN: z.string().default("/usr/lib/postgresql/15/bin"),
  TORTURE_PG_OS_USER: z.string().default("postgres"),
  TORTURE_GATEWAY_SUPERVISED: z.enum(["0", "1"]).default("0"),
  TORTURE_STACK_PID_FILE: z.string().optional(),
});

function fail(message: string): never {
  console.error(message);
  Deno.exit(2);
}

const argsResult = argsSchema.safeParse(parseArgs(Deno.args));
if (!argsResult.success) {
  fail(`${argsResult.error.issues.map((i) => `--${i.path.join(".")}: ${i.message}`).join("; ")}\n${USAGE}`);
}
const envResult = envSchema.safeParse(Deno.env.toObject());
if (!envResult.success) {
  fail(
    `torture needs the stack's environment (run it with npm run torture): ${
      envResult.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")
    }`,
  );
}
const args = argsResult.data;
const env = envResult.data;

const pg: PgControl | null = env.TORTURE_PG_DATA
  ? {
    pgCtl: `${env.TORTURE_PG_BIN}/pg_ctl`,
    dataDir: env.TORTURE_PG_DATA,
    logFile: env.TORTURE_PG_LOG ?? `${env.TORTURE_PG_DATA}/../postgres.log`,
    socketDir: env.TORTURE_PG_SOCKET_DIR ?? "/tmp",
    port: env.DB_PORT,
    osUser: env.TORTURE_PG_OS_USER,
  }
  : null;

const torture = new Torture({
  seed: args.seed,
  ops: args.ops,
  users: args.users ?? Math.min(60, Math.max(6, Math.round(args.ops / 30))),
  checkpointEvery: args["checkpoint-every"] ?? Math.max(50, Math.ceil(args.ops / 8)),
  adminDbUrl: env.SUPABASE_ADMIN_DB_URL,
  pg,
  monitorFunction: args.monitor ?? "",
  gatewaySupervised: env.TORTURE_GATEWAY_SUPERVISED === "1",
  stackPidFile: env.TORTURE_STACK_PID_FILE ?? null,
  log: (line) => console.error(line),
});

const rerun = `npm run torture -- --seed ${args.seed} --ops ${args.ops}`;
let exitCode = 0;
try {
  await torture.setup();
  await torture.run();
  const summary = torture.summary("ok");
  console.log(JSON.stringify(summary, null, 2));
  const faults = summary.faults.client_disconnect + summary.faults.backend_kill + summary.faults.pg_restart;
  console.log(
    `torture: OK: seed ${summary.seed}, ${summary.ops} ops in ${summary.batches} batches, ${faults} faults, ` +
      `${summary.deliveries.attempts ?? 0} deliveries (${
        summary.deliveries.answered_duplicate ?? 0
      } duplicates), ` +
      `${summary.checks.invariant_checks_passed} invariant checks passed, ${summary.duration_seconds} s`,
  );
} catch (err) {
  exitCode = 1;
  console.log(JSON.stringify(torture.summary("diverged"), null, 2));
  console.log(`reproduce: ${rerun}`);
  if (err instanceof Divergence) {
    console.log(`torture: DIVERGED: seed ${args.seed}, first divergence at ${err.message}`);
  } else {
    console.log(
      `torture: ERROR: seed ${args.seed}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`,
    );
  }
} finally {
  await torture.close();
}
Deno.exit(exitCode);
