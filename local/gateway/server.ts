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
      // A loopback login takes milliseconds: waiting the default 30 s only delays the 503 of a
      // request that drew a connection postgres.js can no longer open (see replacePool).
      connect_timeout: 5,
      // RAISE NOTICE from SQL functions would otherwise be printed for every call.
      onnotice: () => {},
      connection: { application_name: "local-gateway" },
    });
  let sql = connect();
  const rpc = createRpcHandler({ pool: () => sql, jwtSecret: opts.jwtSecret, onConnectionLost: replacePool });
  const retired = new Map<postgres.Sql, ReturnType<typeof setTimeout>>(); // replaced pool -> its closing
  const close = (pool: postgres.Sql) => {
    clearTimeout(retired.get(pool));
    retired.delete(pool);
    // At once: this also fails what still waits for one of its connections. A later deadline
    // would not (postgres.js 3.4.9 forgets queued queries once every connection has ended).
    return pool.end({ timeout: 0 }).catch(() => {});
  };

  // PostgreSQL may drop connections under the gateway (a restart, pg_terminate_backend), and
  // postgres.js 3.4.9 may then leave its pool unusable: a connection dropped while a write was
  // pending never sends its startup message again (every request it takes waits for
  // connect_timeout), and it can throw from a socket callback, outside any request. Like the
  // platform's gateway, this one outlives its connections: at the first request that lost its
  // connection (answered 503 PGRST001; callers retry), or the first error outside any request,
  // it swaps in a fresh pool and keeps serving.
  function replacePool(broken: postgres.Sql, reason = "a request lost its connection"): void {
    if (broken !== sql) return; // already replaced, after another request on that pool failed
    console.error(`gateway: new database pool after ${reason}`);
    sql = connect();
    // Closed 5 s later, not now: requests still running on the old pool may finish, and the
    // postgres.js callbacks still queued for it run first (closing it cancels them, which can
    // break Deno's queue of immediate callbacks if one of them has just thrown).
    retired.set(broken, setTimeout(() => close(broken), 5_000));
  }
  const onUncaught = (event: ErrorEvent | PromiseRejectionEvent) => {
    event.preventDefault();
    const reason = event instanceof ErrorEvent ? event.message : String(event.reason);
    replacePool(sql, `an error outside any request: ${reason}`);
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
      await Promise.all([sql.end({ timeout: 5 }), ...[...retired.keys()].map(close)]);
    },
  };
}
