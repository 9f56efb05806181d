// Receives Stripe events: verifies the signature over the raw body, then hands the event to
// ONE database call (public.handle_stripe_event) that records it in the inbox and applies
// it in the same transaction, exactly once per event id. A failure is stored in the inbox
// and answered with 500 so that Stripe delivers again.
import Stripe from "stripe";
import type { SupabaseClient } from "@supabase/supabase-js";
import { jsonError, readBodyText } from "../_shared/http.ts";

/** Stripe's own events are far below this; anything larger is not from Stripe. */
export const MAX_BODY_BYTES = 512 * 1024;

export interface StripeWebhookDeps {
  stripe: Stripe;
  /** Signing secrets accepted; several while one endpoint secret is being rolled. */
  webhookSecrets: string[];
  db: SupabaseClient;
  log?: (message: string) => void;
}

interface HandleResult {
  event_id: string;
  status: "processed" | "ignored" | "deferred" | "failed";
  duplicate: boolean;
  error?: string;
  error_code?: string;
}

const cryptoProvider = Stripe.createSubtleCryptoProvider();

export function createStripeWebhookHandler(deps: StripeWebhookDeps): (req: Request) => Promise<Response> {
  const log = deps.log ?? console.error;

  return async (req: Request): Promise<Response> => {
    if (req.method !== "POST") {
      return jsonError(400, `method ${req.method} not allowed: Stripe sends POST`);
    }
    const signature = req.headers.get("stripe-signature");
    if (!signature) return jsonError(400, "missing Stripe-Signature header");

    const body = await readBodyText(req, MAX_BODY_BYTES);
    if (body === null) return jsonError(400, `body larger than ${MAX_BODY_BYTES} bytes`);

    const verified = await verifyEvent(deps, body, signature);
    if ("error" in verified) return jsonError(400, verified.error);
    const event = verified.event;

    const { data, error } = await deps.db.rpc("handle_stripe_event", { event });
    if (error) {
      log(`stripe-webhook: ${event.id} (${event.type}) not recorded: ${error.code} ${error.message}`);
      return jsonError(500, "the event could not be recorded; Stripe will retry", { eventId: event.id });
    }
    const result = data as HandleResult;
    if (result.status === "failed") {
      log(`stripe-webhook: ${event.id} (${event.type}) failed: ${result.error_code} ${result.error}`);
      return jsonError(500, "the event failed and is stored for retry", { eventId: event.id });
    }
    return Response.json({
      received: true,
      eventId: event.id,
      status: result.status,
      duplicate: result.duplicate,
    });
  };
}

async function verifyEvent(
  deps: StripeWebhookDeps,
  body: string,
  signature: string,
): Promise<{ event: Stripe.Event } | { error: string }> {
  let lastError = "signature verification failed";
  for (const secret of deps.webhookSecrets) {
    try {
      const event = await deps.stripe.webhooks.constructEventAsync(
        body,
        signature,
        secret,
        undefined,
        cryptoProvider,
      );
      // Signed by Stripe but not shaped like an event (id, type, data.object): nothing to apply.
      if (!isEventShaped(event)) return { error: "body is not a JSON Stripe event" };
      return { event };
    } catch (err) {
      if (err instanceof Stripe.errors.StripeSignatureVerificationError) {
        lastError = /timestamp outside the tolerance/i.test(err.message)
          ? "signature timestamp outside the tolerance zone"
          : "signature verification failed";
        continue;
      }
      // The signature matched but the body is not a JSON event.
      return { error: "body is not a JSON Stripe event" };
    }
  }
  return { error: lastError };
}

function isEventShaped(event: unknown): event is Stripe.Event {
  if (typeof event !== "object" || event === null) return false;
  const { id, type, data } = event as Record<string, unknown>;
  const object = (data as Record<string, unknown> | null | undefined)?.object;
  return typeof id === "string" && id !== "" && typeof type === "string" && type !== "" &&
    typeof object === "object" && object !== null && !Array.isArray(object);
}
