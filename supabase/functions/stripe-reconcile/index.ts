// Entry point served by the Supabase edge runtime. The logic lives in handler.ts and
// _shared/reconcile-stripe.ts, which the tests and the admin endpoint use without a server.
import { readEnv, supabaseEnv } from "../_shared/env.ts";
import { reconcileStripe } from "../_shared/reconcile-stripe.ts";
import { createStripeClient, stripeApiEnv } from "../_shared/stripe-client.ts";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { createStripeReconcileHandler } from "./handler.ts";

const env = readEnv({ ...supabaseEnv, ...stripeApiEnv });

const deps = {
  stripe: createStripeClient(env.STRIPE_SECRET_KEY, env.STRIPE_API_BASE),
  db: createAdminClient(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY),
};

Deno.serve(createStripeReconcileHandler({
  serviceRoleKey: env.SUPABASE_SERVICE_ROLE_KEY,
  reconcile: (options) => reconcileStripe(deps, options),
}));
