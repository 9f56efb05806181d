// Runs the local stand-in for the Supabase platform's HTTP side: each edge function in its
// own Deno process (as the edge runtime isolates them), and the loopback gateway in front.
// PostgreSQL is started before this by scripts/start.sh or scripts/test.sh.
//
//   deno run -A local/stack.ts
//
// Reads GATEWAY_PORT, DB_PORT and the function environment (DESIGN.md) from the environment.
import { startGateway } from "./gateway/server.ts";
import { startLocalScheduler } from "./scheduler.ts";

const repoRoot = new URL("..", import.meta.url).pathname;
const functionsDir = `${repoRoot}supabase/functions`;

function requireEnv(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`local/stack.ts needs ${name} in the environment`);
  return value;
}

/** Function folders: every folder with an index.ts, except shared code and tests. */
function listFunctions(): string[] {
  const names: string[] = [];
  for (const entry of Deno.readDirSync(functionsDir)) {
    if (!entry.isDirectory || entry.name.startsWith("_") || entry.name === "tests") continue;
    try {
      Deno.statSync(`${functionsDir}/${entry.name}/index.ts`);
      names.push(entry.name);
    } catch {
      // A folder without index.ts is not a function.
    }
  }
  return names.sort();
}

/** A port nothing listens on now, chosen by the OS: fixed offsets collided with other services. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

const gatewayPort = Number(requireEnv("GATEWAY_PORT"));
const dbPort = Number(requireEnv("DB_PORT"));
const children: Deno.ChildProcess[] = [];
const functionUrls: Record<string, string> = {};

for (const name of listFunctions()) {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      `--config=${repoRoot}deno.json`,
      `${functionsDir}/${name}/index.ts`,
    ],
    env: { DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}` },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  children.push(child);
  functionUrls[name] = `http://127.0.0.1:${port}`;
}
await Promise.all(Object.values(functionUrls).map((url) => waitForPort(Number(new URL(url).port))));

const gateway = startGateway({
  port: gatewayPort,
  hostname: "127.0.0.1",
  databaseUrl: `postgresql://authenticator:postgres@127.0.0.1:${dbPort}/postgres`,
  jwtSecret: requireEnv("JWT_SECRET"),
  functions: functionUrls,
  configTomlPath: `${repoRoot}supabase/config.toml`,
});

console.log(`gateway ${gateway.url}: functions ${Object.keys(functionUrls).join(", ")}`);

// npm start only (scripts/start.sh sets LOCAL_SCHEDULER=1): what pg_net does on hosted Supabase.
const scheduler = Deno.env.get("LOCAL_SCHEDULER") === "1"
  ? startLocalScheduler({
    functionUrl: `${gateway.url}/functions/v1/payment-monitor`,
    serviceRoleKey: requireEnv("SUPABASE_SERVICE_ROLE_KEY"),
  })
  : null;

async function shutdown(): Promise<never> {
  scheduler?.stop();
  for (const child of children) {
    try {
      child.kill("SIGTERM");
    } catch {
      // Already exited.
    }
  }
  await gateway.shutdown();
  Deno.exit(0);
}
Deno.addSignalListener("SIGINT", shutdown);
Deno.addSignalListener("SIGTERM", shutdown);
