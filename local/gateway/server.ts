// The local stand-in for Supabase's API gateway (Kong + PostgREST + the edge relay), for
// development and tests only: it serves just the two routes this project calls through
// supabase-js, `/rest/v1/rpc/<fn>` and `/functions/v1/<name>`, on loopback.

import postgres from "postgres";
import { createFunctionsHandler } from "./functions.ts";
import { createRpcHandler } from "./rpc.ts";

export type GatewayOptions = {
  port: number; // 0 picks a free port; read it back from `url`
  hostname?: string; // defaults to 127.0.0.1: the gateway is not meant to face a network
  databaseUrl: string; // the `authenticator` role's URL, as PostgREST logs in
  jwtSecret: string;
  functions: Record<string, string>; // function name -> base URL of its local server
  configTomlPath: string; // supabase/config.toml, for `[functions.<name>] verify_jwt`
};

export type Gateway = { url: string; shutdown(): Promise<void> };

const rpcPrefix = "/rest/v1/rpc/";
const functionsPrefix = "/functions/v1";

function notFound(): Response {
  // Kong's answer for a path no route claims.
  return Response.json({ message: "no Route matched with those values" }, { status: 404 });
}

export function startGateway(opts: GatewayOptions): Gateway {
  const hostname = opts.hostname ?? "127.0.0.1";
  const connect = () =>
    postgres(opts.databaseUrl, {
      max: 10,
      // RAISE NOTICE from SQL functions would otherwise be printed for every call.
      onnotice: () => {},
      connection: { application_name: "local-gateway" },
    });
  let sql = connect();
  let rpc = createRpcHandler({ sql, jwtSecret: opts.jwtSecret });

  // PostgreSQL may drop connections under the gateway (a restart, pg_terminate_backend), and
  // postgres.js can then throw from a socket callback, outside any request, leaving its pool
  // unusable. Like the platform's gateway, this one outlives its connections: it logs, swaps
  // in a fresh pool and keeps serving; the request in flight already failed with a 5xx.
  const onUncaught = (event: ErrorEvent | PromiseRejectionEvent) => {
    event.preventDefault();
    const reason = event instanceof ErrorEvent ? event.message : String(event.reason);
    console.error(`gateway: new database pool after an error outside any request: ${reason}`);
    const broken = sql;
    sql = connect();
    rpc = createRpcHandler({ sql, jwtSecret: opts.jwtSecret });
    broken.end({ timeout: 0 }).catch(() => {});
  };
  globalThis.addEventListener("error", onUncaught);
  globalThis.addEventListener("unhandledrejection", onUncaught);
  const functions = createFunctionsHandler({
    functions: opts.functions,
    jwtSecret: opts.jwtSecret,
    configTomlPath: opts.configTomlPath,
  });

  async function route(req: Request, pathname: string): Promise<Response> {
    if (pathname.startsWith(rpcPrefix)) {
      let fnName: string;
      try {
        fnName = decodeURIComponent(pathname.slice(rpcPrefix.length));
      } catch {
        return notFound();
      }
      return fnName === "" || fnName.includes("/") ? notFound() : await rpc(req, fnName);
    }
    if (pathname === functionsPrefix || pathname.startsWith(`${functionsPrefix}/`)) {
      return await functions(req, pathname.slice(functionsPrefix.length));
    }
    return notFound();
  }

  const server = Deno.serve({
    port: opts.port,
    hostname,
    onListen: () => {},
  }, async (req) => {
    const started = performance.now();
    // Only the path is logged: query strings, headers and bodies can carry keys.
    const { pathname } = new URL(req.url);
    let res: Response;
    try {
      res = await route(req, pathname);
    } catch (err) {
      console.error(`gateway: ${err instanceof Error ? err.message : String(err)}`);
      res = Response.json({ message: "Internal gateway error" }, { status: 500 });
    }
    const ms = Math.round(performance.now() - started);
    console.log(`${req.method} ${pathname} ${res.status} ${ms}ms`);
    return res;
  });

  return {
    url: `http://${hostname}:${server.addr.port}`,
    async shutdown() {
      globalThis.removeEventListener("error", onUncaught);
      globalThis.removeEventListener("unhandledrejection", onUncaught);
      await server.shutdown();
      await sql.end({ timeout: 5 });
    },
  };
}
