// A supabase-js client with the service-role key, for calling the package's RPCs. It keeps
// no session: every call is a plain, stateless request to the Data API.
import { createClient, type SupabaseClient } from "@supabase/supabase-js";

export function createAdminClient(url: string, serviceRoleKey: string): SupabaseClient {
  return createClient(url, serviceRoleKey, {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });
}
