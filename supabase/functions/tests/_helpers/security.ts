// The security sweep's view of the package: every table, view and function it installed in
// public and credit_private (found in the catalog, so objects added later are swept too;
// extension-owned objects are the extension's business), clients for each API identity, and
// SQL run under an API role the way PostgREST runs it (set local role + request.jwt.claims).
import { createClient, type SupabaseClient } from "@supabase/supabase-js";
import postgres from "postgres";
import type { Sql } from "./db.ts";
import { stack } from "./env.ts";
import { userAccessToken } from "./auth.ts";

export const PACKAGE_SCHEMAS = ["public", "credit_private"];
// Sent as one text parameter, not a JS array: postgres.js serialises an array parameter with
// array types it fetches on connecting, and once (CI, the first query of a fresh pool) sent
// this list as the plain text "public,credit_private" ("malformed array literal").
const schemaList = PACKAGE_SCHEMAS.join(",");

export interface PackageFunction {
  schema: string;
  name: string;
  /** schema.name(identity arguments), as in error messages and grants. */
  signature: string;
  /** Input arguments in order; name is "" for an unnamed one. */
  args: Array<{ name: string; type: string; hasDefault: boolean }>;
  returnsTrigger: boolean;
  securityDefiner: boolean;
}

export interface PackageRelation {
  schema: string;
  name: string;
  qualified: string;
  kind: "table" | "view" | "materialized view";
  columns: string[];
}

export async function packageFunctions(sql: Sql): Promise<PackageFunction[]> {
  const rows = await sql`
    select n.nspname as schema, p.proname as name,
      format('%I.%I(%s)', n.nspname, p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid)) as signature,
      coalesce((
        select json_agg(json_build_object(
          'name', coalesce(a.name, ''), 'type', pg_catalog.format_type(a.type, null),
          'hasDefault', a.ord > p.pronargs - p.pronargdefaults) order by a.ord)
        from unnest(p.proargtypes::oid[], p.proargnames[1:p.pronargs]) with ordinality as a(type, name, ord)
      ), '[]') as args,
      p.prorettype = 'pg_catalog.trigger'::pg_catalog.regtype as returns_trigger,
      p.prosecdef as security_definer
    from pg_catalog.pg_proc p
    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = any(pg_catalog.string_to_array(${schemaList}, ',')) and p.prokind in ('f', 'p')
      and not exists (select 1 from pg_catalog.pg_depend d
                      where d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass and d.objid = p.oid and d.deptype = 'e')
    order by 3`;
  return rows.map((row) => ({
    schema: row.schema,
    name: row.name,
    signature: row.signature,
    args: row.args,
    returnsTrigger: row.returns_trigger,
    securityDefiner: row.security_definer,
  }));
}

export async function packageRelations(sql: Sql): Promise<PackageRelation[]> {
  const rows = await sql`
    select n.nspname as schema, c.relname as name, format('%I.%I', n.nspname, c.relname) as qualified,
      case c.relkind when 'v' then 'view' when 'm' then 'materialized view' else 'table' end as kind,
      array(select a.attname::text from pg_catalog.pg_attribute a
            where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped order by a.attnum) as columns
    from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = any(pg_catalog.string_to_array(${schemaList}, ',')) and c.relkind in ('r', 'p', 'v', 'm')
      and not exists (select 1 from pg_catalog.pg_depend d
                      where d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass and d.objid = c.oid and d.deptype = 'e')
    order by 3`;
  return rows.map((row) => ({
    schema: row.schema,
    name: row.name,
    qualified: row.qualified,
    kind: row.kind,
    columns: row.columns,
  }));
}

/** A harmless value of a SQL type for probing a function (uuids are the given user's). */
export function sampleArgument(type: string, userId: string): unknown {
  if (type.endsWith("[]")) return [];
  switch (type) {
    case "uuid":
      return userId;
    case "text":
    case "character varying":
      return "security-sweep";
    case "bigint":
    case "integer":
    case "smallint":
    case "numeric":
      return 1;
    case "boolean":
      // Every repair RPC takes dry_run: true keeps a call that got through from changing anything.
      return true;
    case "jsonb":
    case "json":
      return {};
    case "timestamp with time zone":
      return "2026-01-01T00:00:00Z";
    case "interval":
      return "1 hour";
    default:
      return null;
  }
}

export type Identity = "anon" | "authenticated" | "service_role";

/** A supabase-js client as anon (anon key), as a signed-in user (their JWT) or as service_role. */
export async function clientAs(identity: Identity, userId?: string): Promise<SupabaseClient> {
  const options = { auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false } };
  if (identity === "service_role") return createClient(stack.url, stack.serviceRoleKey, options);
  if (identity === "anon") return createClient(stack.url, stack.anonKey, options);
  if (!userId) throw new Error("an authenticated client needs a user");
  const token = await userAccessToken(userId);
  return createClient(stack.url, stack.anonKey, {
    ...options,
    global: { headers: { Authorization: `Bearer ${token}` } },
  });
}

export interface SqlOutcome {
  ok: boolean;
  /** SQLSTATE when refused. */
  code?: string;
  /** Rows returned or affected. */
  count?: number;
  rows?: Array<Record<string, unknown>>;
}

/**
 * Runs one statement as an API role, as PostgREST does (set local role, request.jwt.claims),
 * in a transaction that is always rolled back: a probe never leaves anything behind.
 */
export async function asRole(
  sql: Sql,
  role: Identity,
  userId: string | null,
  statement: string,
): Promise<SqlOutcome> {
  const claims = role === "authenticated" ? { sub: userId, role } : { role };
  let outcome: SqlOutcome = { ok: false };
  try {
    await sql.begin(async (tx) => {
      await tx`select set_config('request.jwt.claims', ${JSON.stringify(claims)}, true)`;
      await tx.unsafe(`set local role ${role}`);
      const rows = await tx.unsafe(statement);
      outcome = { ok: true, count: rows.count ?? rows.length, rows: [...rows] };
      throw new RolledBack();
    });
  } catch (err) {
    if (err instanceof RolledBack) return outcome;
    if (err instanceof postgres.PostgresError) return { ok: false, code: err.code };
    throw err;
  }
  return outcome;
}

class RolledBack extends Error {}

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
