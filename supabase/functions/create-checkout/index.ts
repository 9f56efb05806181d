// Entry point served by the Supabase edge runtime. The logic lives in handler.ts, which the
// tests import without starting a server.
import { createClient } from "@supabase/supabase-js";
import { z } from "zod";
import { readEnv, supabaseEnv } from "../_shared/env.ts";
import { createStripeClient, stripeApiEnv } from "../_shared/stripe-client.ts";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { createCheckoutHandler } from "./handler.ts";
import { isAcceptableUrl } from "./urls.ts";

const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => value === "" ? undefined : value, schema.optional());
const pageUrl = z.string().refine(isAcceptableUrl, "must be an https URL (http only for localhost)");

const env = readEnv({
  ...supabaseEnv,
  ...stripeApiEnv,
  SUPABASE_ANON_KEY: z.string().min(20),
  CHECKOUT_SUCCESS_URL: optional(pageUrl),
  CHECKOUT_CANCEL_URL: optional(pageUrl),
  // Comma-separated origins a request's own successUrl/cancelUrl may use.
  CHECKOUT_ALLOWED_ORIGINS: optional(
    z.string().transform((value) => value.split(",").map((origin) => origin.trim()).filter(Boolean))
      .pipe(z.array(pageUrl)),
  ),
});

const clientOptions = {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
};

Deno.serve(createCheckoutHandler({
  stripe: createStripeClient(env.STRIPE_SECRET_KEY, env.STRIPE_API_BASE),
  db: createAdminClient(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY),
  userDb: (authorization) =>
    createClient(env.SUPABASE_URL, env.SUPABASE_ANON_KEY, {
      ...clientOptions,
      global: { headers: { Authorization: authorization } },
    }),
  urls: {
    successUrl: env.CHECKOUT_SUCCESS_URL,
    cancelUrl: env.CHECKOUT_CANCEL_URL,
    allowedOrigins: env.CHECKOUT_ALLOWED_ORIGINS ?? [],
  },
}));
