// Entry point served by the Supabase edge runtime. The logic lives in handler.ts and
// slack.ts, which the tests import without starting a server.
import { z } from "zod";
import { readEnv, supabaseEnv } from "../_shared/env.ts";
import { createAdminClient } from "../_shared/supabase-admin.ts";
import { createPaymentMonitorHandler } from "./handler.ts";

const env = readEnv({
  ...supabaseEnv,
  // Unset or empty: nothing is sent, alerts and reports stay in the outbox.
  SLACK_WEBHOOK_URL: z.preprocess(
    (value) => value === "" ? undefined : value,
    z.url({ protocol: /^https?$/ }).optional(),
  ),
});

Deno.serve(createPaymentMonitorHandler({
  serviceRoleKey: env.SUPABASE_SERVICE_ROLE_KEY,
  db: createAdminClient(env.SUPABASE_URL, env.SUPABASE_SERVICE_ROLE_KEY),
  slackWebhookUrl: env.SLACK_WEBHOOK_URL ?? null,
}));
