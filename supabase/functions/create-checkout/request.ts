// The body create-checkout accepts. idempotencyKey names one purchase attempt: a client that
// retries (a double click, a lost answer) with the same key gets the same Checkout Session.
import { z } from "zod";

export const checkoutRequestSchema = z.strictObject({
  packageId: z.uuid(),
  successUrl: z.string().min(1).max(2048).optional(),
  cancelUrl: z.string().min(1).max(2048).optional(),
  idempotencyKey: z.string().regex(/^[A-Za-z0-9_-]{8,100}$/, "8 to 100 letters, digits, - or _").optional(),
});

export type CheckoutRequest = z.infer<typeof checkoutRequestSchema>;

/** A credit package as public.get_checkout_package returns it. */
export interface CreditPackage {
  id: string;
  name: string;
  stripe_price_id: string;
  credits: number;
  amount_cents: number;
  currency: string;
  active: boolean;
}

export interface CheckoutIdentity {
  user_id: string;
  package: CreditPackage | null;
}
