// Calls a database function through supabase-js and returns its data, or throws an RpcError
// that keeps PostgREST's code and HTTP status (for the caller to decide) but whose message
// names only the function: database messages can quote values and stay in the logs.
import type { SupabaseClient } from "@supabase/supabase-js";

export class RpcError extends Error {
  constructor(
    readonly fn: string,
    /** SQLSTATE or PostgREST code (PGRST...), e.g. 42501 or CR004. */
    readonly code: string,
    readonly status: number,
    /** The database's own message: for logs, never for responses. */
    readonly detailForLog: string,
  ) {
    super(`rpc ${fn} failed (${code})`);
  }
}

export async function callRpc<T>(db: SupabaseClient, fn: string, args: Record<string, unknown>): Promise<T> {
  const { data, error, status } = await db.rpc(fn, args);
  if (error) throw new RpcError(fn, error.code ?? "unknown", status, error.message);
  return data as T;
}
