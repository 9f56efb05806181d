// Faults injected into the stack: PostgreSQL backends of the gateway killed with
// pg_terminate_backend (as supabase_admin), and PostgreSQL itself stopped with
// `pg_ctl stop -m immediate` (a crash: no checkpoint, recovery from the WAL at restart) and
// started again. Also the barrier that waits until no request is still running in the
// database, so that what an unanswered request did can be looked up.
import postgres from "postgres";
import { stack } from "../_helpers/env.ts";

/** How to reach the PostgreSQL cluster of the stack under test (given by torture.sh / test.sh). */
export interface PgControl {
  pgCtl: string;
  dataDir: string;
  logFile: string;
  socketDir: string;
  port: number;
  /** OS user that owns the cluster; pg_ctl runs as this user through runuser when we are root. */
  osUser: string;
}

/** The gateway logs in with this application_name: its backends are the ones killed. */
const GATEWAY_APPLICATION = "local-gateway";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Faults {
  readonly admin: postgres.Sql;

  constructor(private readonly adminUrl: string, readonly pg: PgControl | null) {
    this.admin = postgres(adminUrl, {
      max: 2,
      onnotice: () => {},
      connection: { application_name: "torture-faults" },
    });
  }

  async close(): Promise<void> {
    await this.admin.end({ timeout: 5 });
  }

  /** Terminates every backend of the gateway (busy or idle); returns how many. */
  async killGatewayBackends(): Promise<number> {
    const rows = await retryDb(() =>
      this.admin`
        with target as materialized (
          select pid from pg_catalog.pg_stat_activity
          where application_name = ${GATEWAY_APPLICATION} and pid <> pg_catalog.pg_backend_pid()
        )
        select count(*) filter (where pg_catalog.pg_terminate_backend(pid))::int as killed from target`
    );
    return rows[0].killed as number;
  }

  private async pgCtl(args: string[]): Promise<void> {
    const pg = this.pg;
    if (!pg) throw new Error("no PostgreSQL control (TORTURE_PG_DATA unset)");
    const asRoot = Deno.uid() === 0;
    const command = new Deno.Command(asRoot ? "runuser" : pg.pgCtl, {
      args: asRoot ? ["-u", pg.osUser, "--", pg.pgCtl, ...args] : args,
      stdout: "piped",
      stderr: "piped",
    });
    const result = await command.output();
    if (!result.success) {
      const output = new TextDecoder().decode(result.stderr) + new TextDecoder().decode(result.stdout);
      throw new Error(`pg_ctl ${args.at(-1)} failed: ${output.trim()}`);
    }
  }

  /** A crash: every backend dies at once, nothing is flushed beyond what was committed. */
  async stopImmediate(): Promise<void> {
    const pg = this.pg;
    if (!pg) throw new Error("no PostgreSQL control");
    await this.pgCtl(["-D", pg.dataDir, "-m", "immediate", "-w", "stop"]);
  }

  async start(): Promise<void> {
    const pg = this.pg;
    if (!pg) throw new Error("no PostgreSQL control");
    await this.pgCtl([
      "-D",
      pg.dataDir,
      "-l",
      pg.logFile,
      "-w",
      "-t",
      "120",
      "-o",
      `-p ${pg.port} -k ${pg.socketDir}`,
      "start",
    ]);
  }

  /**
   * Waits until the gateway answers RPCs from the database again: after a kill or a restart
   * its pool must drop dead connections and open new ones. A call to a function that does
   * not exist needs the database (the gateway looks it up) and changes nothing. Returns
   * whether the gateway refused connections meanwhile, that is, its process had died.
   */
  async waitForGateway(
    timeoutMs: number,
    stopWhenRefused: boolean,
  ): Promise<{ ready: boolean; refused: boolean }> {
    const deadline = Date.now() + timeoutMs;
    let good = 0;
    let refused = false;
    while (good < 3) {
      if (Date.now() > deadline || (refused && stopWhenRefused)) return { ready: false, refused };
      const answers = await Promise.all(Array.from({ length: 10 }, async () => {
        try {
          const response = await fetch(`${stack.url}/rest/v1/rpc/torture_readiness_probe`, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              apikey: stack.serviceRoleKey,
              authorization: `Bearer ${stack.serviceRoleKey}`,
            },
            body: "{}",
            // Well above the gateway's connect timeout (5 s), so a slow reconnect is not taken for a wedge.
            signal: AbortSignal.timeout(40_000),
          });
          await response.body?.cancel();
          return response.status === 404;
        } catch (err) {
          if (err instanceof TypeError && /refused/i.test(`${err.message} ${err.cause ?? ""}`)) {
            refused = true;
          }
          return false;
        }
      }));
      if (answers.every(Boolean)) good++;
      else {
        good = 0;
        await sleep(100);
      }
    }
    return { ready: true, refused };
  }

  /**
   * Stops the local stack (torture.sh's supervisor starts it again): SIGTERM, which stops its
   * function processes too, then SIGKILL if it is still there after 10 s.
   */
  async stopStack(pidFile: string): Promise<void> {
    const pid = Number(Deno.readTextFileSync(pidFile).trim());
    if (!Number.isInteger(pid) || pid <= 1) throw new Error(`no stack pid in ${pidFile}`);
    const alive = () => {
      try {
        Deno.kill(pid, "SIGCONT");
        return true;
      } catch {
        return false;
      }
    };
    Deno.kill(pid, "SIGTERM");
    for (let i = 0; i < 100 && alive(); i++) await sleep(100);
    if (alive()) Deno.kill(pid, "SIGKILL");
    // Until the supervisor has started the next one (a new pid in the file).
    for (let i = 0; i < 100; i++) {
      await sleep(100);
      if (Number(Deno.readTextFileSync(pidFile).trim()) !== pid) return;
    }
  }

  /** Who is connected to the database, for a report: whether it accepts connections at all. */
  async databaseState(): Promise<string> {
    const probe = postgres(this.adminUrl, { max: 1, connect_timeout: 10, onnotice: () => {} });
    try {
      const rows = await probe`
        select coalesce(application_name, '') || ' ' || coalesce(state, '(no state)') || ': ' || count(*) as line
        from pg_catalog.pg_stat_activity group by application_name, state order by 1`;
      return `accepts connections; ${rows.map((row) => row.line).join(", ")}`;
    } catch (err) {
      return `a new connection fails: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      await probe.end({ timeout: 5 });
    }
  }

  /**
   * Waits until no request is running in the database: nothing the gateway started is still
   * active or in a transaction, twice in a row, after a grace period for requests still in
   * the functions. Only then is what an unanswered request did final and can be looked up.
   */
  async quiesce(): Promise<void> {
    await sleep(250);
    const deadline = Date.now() + 30_000;
    let quiet = 0;
    while (quiet < 2) {
      if (Date.now() > deadline) throw new Error("requests still running in the database after 30 s");
      const rows = await retryDb(() =>
        this.admin`
          select count(*)::int as busy
          from pg_catalog.pg_stat_activity
          where application_name = ${GATEWAY_APPLICATION} and state <> 'idle'`
      );
      quiet = rows[0].busy === 0 ? quiet + 1 : 0;
      await sleep(30);
    }
  }
}

/** Whether an error means "the connection is gone" (worth retrying once it is back). */
function isConnectionError(err: unknown): boolean {
  if (err instanceof postgres.PostgresError) {
    return err.code.startsWith("08") || err.code === "57P01" || err.code === "57P03";
  }
  const code = (err as { code?: unknown })?.code;
  return typeof code === "string" &&
      [
        "CONNECTION_CLOSED",
        "CONNECTION_ENDED",
        "CONNECTION_DESTROYED",
        "CONNECT_TIMEOUT",
        "ECONNREFUSED",
        "ECONNRESET",
      ]
        .includes(code) ||
    (err instanceof Error && /connection|ECONNREFUSED|ECONNRESET|broken pipe/i.test(err.message));
}

/** Runs a query of the checker, retrying while the database is coming back after a fault. */
export async function retryDb<T>(query: () => Promise<T>): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await query();
    } catch (err) {
      if (attempt >= 20 || !isConnectionError(err)) throw err;
      await sleep(200);
    }
  }
}
