// PostgREST's RPC contract, `POST /rest/v1/rpc/<fn>` on schema public, for the local stack
// where no PostgREST binary exists. It keeps the parts supabase-js `.rpc()` and SQL code rely
// on: the role switch from the JWT's `role` claim, `request.jwt.claims` (read by auth.uid()
// and friends), named JSON arguments, PostgREST's result shapes and its error bodies and
// status codes. Everything else PostgREST does is out of scope (see README.md).

import postgres from "postgres";
import { bearerToken, type JwtClaims, verifyJwt } from "./jwt.ts";

type Sql = postgres.Sql;

/** A PostgREST error body. */
type ApiError = { code: string; message: string; details: string | null; hint: string | null };

type Arg = { name: string; type: string; variadic: boolean };

/** One overload of a public function, as read from pg_proc. */
type Proc = {
  name: string;
  args: Arg[]; // input arguments only, in declaration order
  defaults: number; // how many trailing input arguments have defaults
  returnsSet: boolean;
  returnsVoid: boolean;
  returnsComposite: boolean;
};

function apiError(
  status: number,
  code: string,
  message: string,
  details: string | null = null,
  hint: string | null = null,
): Response {
  const body: ApiError = { code, message, details, hint };
  return Response.json(body, { status });
}

/** PostgREST's mapping from SQLSTATE to HTTP status. */
export function httpStatusForSqlState(code: string, role: string): number {
  // PostgREST answers "who are you?" to anonymous callers and "not allowed" to known ones.
  if (code === "42501") return role === "anon" ? 401 : 403;
  const custom = /^PT(\d{3})$/.exec(code);
  if (custom) return Number(custom[1]);

  const exact: Record<string, number> = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "P0001": 400,
    "42883": 404,
    "42P01": 404,
  };
  const byClass: Record<string, number> = {
    "08": 503,
    "09": 500,
    "0L": 403,
    "0P": 403,
    "25": 500,
    "28": 403,
    "2D": 500,
    "38": 500,
    "39": 500,
    "3B": 500,
    "40": 500,
    "53": 503,
    "54": 500,
    "55": 500,
    "57": 500,
    "58": 500,
    "F0": 500,
    "HV": 500,
    "P0": 500,
    "XX": 500,
  };
  return exact[code] ?? byClass[code.slice(0, 2)] ?? 400;
}

/**
 * The role and claims for a request. supabase-js sends its key both as `apikey` and as
 * `Authorization: Bearer`; a signed-in client replaces the latter with the user's token, so
 * Authorization wins. With no credentials at all the request is anonymous, as in PostgREST.
 */
async function authenticate(
  req: Request,
  jwtSecret: string,
): Promise<{ role: string; claims: JwtClaims } | Response> {
  const authorization = req.headers.get("authorization");
  const token = authorization !== null ? bearerToken(authorization) : req.headers.get("apikey");
  if (!token) return { role: "anon", claims: { role: "anon" } };

  const result = await verifyJwt(token, jwtSecret);
  if (!result.ok) {
    return result.error === "expired"
      ? apiError(401, "PGRST303", "JWT expired")
      : apiError(401, "PGRST301", result.message);
  }
  // A valid token without a role claim is anonymous, as PostgREST's db-anon-role does it.
  const role = typeof result.claims.role === "string" ? result.claims.role : "anon";
  return { role, claims: result.claims };
}

function parseArgs(text: string): Record<string, unknown> | null {
  if (text.trim() === "") return {};
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? value as Record<string, unknown>
      : null;
  } catch {
    return null;
  }
}

// Read on every call rather than cached: a lookup costs one indexed catalog query, and this
// way functions created, replaced or dropped by a migration are seen at once.
async function lookupOverloads(sql: Sql, name: string): Promise<Proc[]> {
  return await sql<Proc[]>`
    select
      p.proname as name,
      coalesce((
        select json_agg(json_build_object(
          'name', coalesce(a.name, ''),
          'type', pg_catalog.format_type(a.type, null),
          'variadic', coalesce(a.mode = 'v', false)
        ) order by a.ord)
        from unnest(coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargmodes, p.proargnames)
          with ordinality as a(type, mode, name, ord)
        where coalesce(a.mode, 'i') in ('i', 'b', 'v')
      ), '[]') as args,
      p.pronargdefaults::int as defaults,
      p.proretset as "returnsSet",
      p.prorettype = 'pg_catalog.void'::pg_catalog.regtype as "returnsVoid",
      -- OUT and TABLE parameters make a row even when there is only one of them.
      t.typtype = 'c'
        or p.prorettype = 'pg_catalog.record'::pg_catalog.regtype
        or coalesce(p.proargmodes && array['o', 't']::"char"[], false) as "returnsComposite"
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    join pg_catalog.pg_type t on t.oid = p.prorettype
    where n.nspname = 'public' and p.proname = ${name} and p.prokind = 'f'
  `;
}

/**
 * The overload whose argument names cover exactly the body's keys, arguments with defaults
 * being optional. Several matches are settled, as in PostgREST, by the one taking all its
 * arguments from the body; failing that the call is ambiguous.
 */
function pickOverload(candidates: Proc[], keys: string[]): Proc | "ambiguous" | null {
  const matching = candidates.filter((proc) => {
    const names = proc.args.map((arg) => arg.name);
    const firstDefault = proc.args.length - proc.defaults;
    return keys.every((key) => names.includes(key)) &&
      proc.args.every((arg, i) => keys.includes(arg.name) || i >= firstDefault);
  });
  if (matching.length <= 1) return matching[0] ?? null;
  const exact = matching.filter((proc) => proc.args.length === keys.length);
  return exact.length === 1 ? exact[0] : "ambiguous";
}

function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * The SQL that calls `proc` and renders PostgREST's JSON body as text. Like PostgREST, the
 * arguments travel as the JSON body itself, turned into typed values by json_to_record: JSON
 * arrays become Postgres arrays, objects become json/jsonb or composites, strings are cast.
 */
function callSql(proc: Proc, given: Arg[]): string {
  const namedArgs = given.map((arg) =>
    `${arg.variadic ? "variadic " : ""}${ident(arg.name)} => pgrst_args.${ident(arg.name)}`
  );
  const call = `public.${ident(proc.name)}(${namedArgs.join(", ")})`;
  const args = given.length === 0
    ? null
    : `pg_catalog.json_to_record($1::text::json) as pgrst_args(${
      given.map((arg) => `${ident(arg.name)} ${arg.type}`).join(", ")
    })`;
  const from = args === null ? "" : ` from ${args}`;
  const fromCall = (alias: string) => ` from ${args === null ? "" : `${args}, `}${call} as ${alias}`;

  if (proc.returnsVoid && !proc.returnsSet) return `select ${call}${from}`;
  if (proc.returnsComposite) {
    // A subquery's row always renders as an object, even for a single OUT column.
    const rows = `(select pgrst_fn.*${fromCall("pgrst_fn")}) as pgrst_row`;
    return proc.returnsSet
      ? `select coalesce(json_agg(pgrst_row), '[]')::text as body from ${rows}`
      : `select to_json(pgrst_row)::text as body from ${rows}`;
  }
  return proc.returnsSet
    ? `select coalesce(json_agg(pgrst_fn.value), '[]')::text as body${fromCall("pgrst_fn(value)")}`
    : `select to_json(${call})::text as body${from}`;
}

function notFound(name: string, keys: string[]): Response {
  const signature = keys.length === 0
    ? `public.${name} without parameters`
    : `public.${name}(${keys.join(", ")})`;
  const searched = keys.length === 0
    ? `without parameters`
    : `with parameter${keys.length === 1 ? "" : "s"} ${keys.join(", ")}`;
  return apiError(
    404,
    "PGRST202",
    `Could not find the function ${signature} in the schema cache`,
    `Searched for the function public.${name} ${searched}, but no matches were found in the schema cache.`,
  );
}

/**
 * Whether a failed call lost its connection: no answer from PostgreSQL at all (closed, reset,
 * timed out, refused), or a FATAL error, after which PostgreSQL closes the session.
 */
function connectionLost(err: unknown): boolean {
  return !(err instanceof postgres.PostgresError) || err.severity === "FATAL" || err.severity === "PANIC";
}

/**
 * Runs `fn` in one transaction on a connection reserved from `sql`. Not sql.begin: after its
 * connection is lost, postgres.js 3.4.9's begin still sends ROLLBACK on it, and that write
 * throws from a setImmediate callback once the socket is gone, outside any request; in Deno
 * such a throw can leave the process's immediate queue broken, so that no postgres.js write
 * goes out any more. Here a lost connection is never used again, nor given back to the pool
 * (which the caller then replaces).
 */
async function inTransaction<T>(sql: Sql, fn: (tx: postgres.ReservedSql) => Promise<T>): Promise<T> {
  const tx = await sql.reserve();
  try {
    await tx`begin`;
    const result = await fn(tx);
    await tx`commit`;
    tx.release();
    return result;
  } catch (err) {
    if (connectionLost(err)) throw err;
    await tx`rollback`; // if this loses the connection, its error is the one thrown
    tx.release();
    throw err;
  }
}

/**
 * Handles `POST /rest/v1/rpc/<fnName>` against the pool `pool()` returns when the call starts
 * querying (logged in as authenticator). `onConnectionLost(sql)` is called when a call on pool
 * `sql` lost its connection: that pool may be broken.
 */
export function createRpcHandler(
  opts: { pool: () => Sql; jwtSecret: string; onConnectionLost?: (sql: Sql) => void },
): (req: Request, fnName: string) => Promise<Response> {
  const { pool, jwtSecret, onConnectionLost } = opts;

  return async (req, fnName) => {
    if (req.method !== "POST") {
      return apiError(405, "PGRST117", `Unsupported HTTP method: ${req.method}`);
    }
    const profile = req.headers.get("content-profile");
    if (profile !== null && profile !== "public") {
      return apiError(406, "PGRST106", "The schema must be one of the following: public");
    }

    const auth = await authenticate(req, jwtSecret);
    if (auth instanceof Response) return auth;
    const { role, claims } = auth;

    const bodyText = await req.text();
    const body = parseArgs(bodyText);
    if (body === null) {
      return apiError(400, "PGRST102", "Empty or invalid json", null, "The body must be a JSON object");
    }
    const keys = Object.keys(body).sort();

    const sql = pool();
    try {
      const proc = pickOverload(await lookupOverloads(sql, fnName), keys);
      if (proc === null) return notFound(fnName, keys);
      if (proc === "ambiguous") {
        return apiError(
          300,
          "PGRST203",
          `Could not choose the best candidate function for public.${fnName}(${keys.join(", ")})`,
          null,
          "Try renaming the parameters or the function itself in the database so function overloading can be resolved",
        );
      }
      const given = proc.args.filter((arg) => keys.includes(arg.name));
      const query = callSql(proc, given);

      // One transaction per request, as PostgREST: the `true` makes every setting local to
      // it, so nothing leaks to the next request on the same pooled connection.
      const rows = await inTransaction(sql, async (tx) => {
        await tx`
          select
            set_config('role', ${role}, true),
            set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
            set_config('request.method', 'POST', true),
            set_config('request.path', ${`/rpc/${fnName}`}, true)
        `;
        // `alter role ... set` settings (the platform's statement_timeout for anon and
        // authenticated) apply only at login, not on a role switch, so PostgREST applies the
        // impersonated role's settings itself. Only those any user may change are possible.
        await tx`
          select set_config(split_part(setting, '=', 1), substr(setting, strpos(setting, '=') + 1), true)
          from pg_catalog.pg_roles r, unnest(r.rolconfig) as setting
          where r.rolname = ${role}
            and split_part(setting, '=', 1) in (
              select name from pg_catalog.pg_settings where context = 'user'
            )
        `;
        return await tx.unsafe(query, given.length === 0 ? [] : [bodyText]);
      });

      if (proc.returnsVoid && !proc.returnsSet) return new Response(null, { status: 204 });
      const json = typeof rows[0]?.body === "string" ? rows[0].body : "null";
      return new Response(json, {
        status: 200,
        headers: { "content-type": "application/json; charset=utf-8" },
      });
    } catch (err) {
      if (connectionLost(err)) onConnectionLost?.(sql);
      if (err instanceof postgres.PostgresError) {
        return apiError(
          httpStatusForSqlState(err.code, role),
          err.code,
          err.message,
          err.detail ?? null,
          err.hint ?? null,
        );
      }
      // Not an SQL error: the database is unreachable or the pool broke. Say so without
      // forwarding internals to the caller; the operator sees the cause on stderr.
      console.error(`rpc ${fnName}: ${err instanceof Error ? err.message : String(err)}`);
      return apiError(503, "PGRST001", "Database client error");
    }
  };
}
