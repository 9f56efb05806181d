// Entry point served by the Supabase edge runtime. The logic lives in handler.ts, which the
// tests import and build with their own keys. The environment is read once: the keys are
// validated here (length, names, none equal to one of the project's own API keys) and a bad
// value stops the function at start with a message naming the variable, never the value.
import { z } from "zod";
import { EnvError, readEnv, supabaseEnv } from "../_shared/env.ts";
import { reconcileStripe } from "../_shared/reconcile-stripe.ts";
import { createStripeClient, stripeApiEnv } from "../_shared/stripe-client.ts";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { createAdminFixCreditsHandler } from "./handler.ts";
import { type AdminKey, AdminKeyError, parseAdminKeys, supabaseApiKeys } from "./keys.ts";

const optional = z.string().optional();

const env = readEnv({
  ...supabaseEnv,
  ...stripeApiEnv,
  // One key, named "default".
  ADMIN_API_KEY: optional,
  // Several named keys, for rotation: {"name": "key", ...} or name:key,name2:key2.
  ADMIN_API_KEYS: optional,
});

function adminKeys(): AdminKey[] {
  try {
    return parseAdminKeys(env, supabaseApiKeys(Deno.env.toObject()));
  } catch (err) {
    if (err instanceof AdminKeyError) throw new EnvError(`invalid environment: ${err.message}`);
    throw err;
  }
}

const db = createAdminClient(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY);
const stripe = createStripeClient(env.STRIPE_SECRET_KEY, env.STRIPE_API_BASE);

Deno.serve(createAdminFixCreditsHandler({
  keys: adminKeys(),
  db,
  reconcile: (options) => reconcileStripe({ stripe, db }, options),
}));
