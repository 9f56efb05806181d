// Entry point served by the Supabase edge runtime. The logic lives in handler.ts, which the
// tests import without starting a server.
import Stripe from "stripe";
import { z } from "zod";
import { readEnv, supabaseEnv } from "../_shared/env.ts";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { createStripeWebhookHandler } from "./handler.ts";

const env = readEnv({
  ...supabaseEnv,
  STRIPE_SECRET_KEY: z.string().min(1),
  // One secret, or several separated by commas while rolling the endpoint's secret.
  STRIPE_WEBHOOK_SECRET: z.string().min(1),
});

Deno.serve(createStripeWebhookHandler({
  stripe: new Stripe(env.STRIPE_SECRET_KEY, { httpClient: Stripe.createFetchHttpClient() }),
  webhookSecrets: env.STRIPE_WEBHOOK_SECRET.split(",").map((secret) => secret.trim()).filter(Boolean),
  db: createAdminClient(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY),
}));
