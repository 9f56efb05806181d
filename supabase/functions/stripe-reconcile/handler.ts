// Runs one reconciliation with Stripe (see _shared/reconcile-stripe.ts) and answers its JSON
// report: 200 when the run did all it set out to do within its limits, 500 when Stripe or
// the database stopped it (the report says where). The gateway does not check a JWT here
// (verify_jwt = false): only the service-role key is accepted, compared in constant time,
// so pg_cron (through pg_net) and operators can call it and nobody else.
import { z } from "zod";
import { hasBearerSecret } from "../_shared/bearer-auth.ts";
import { jsonError, readBodyText } from "../_shared/http.ts";
import type { ReconcileOptionsInput, ReconcileReport } from "../_shared/reconcile-stripe.ts";
import { reconcileOptionsSchema } from "../_shared/reconcile-stripe.ts";

const MAX_BODY_BYTES = 16 * 1024;

export interface StripeReconcileDeps {
  serviceRoleKey: string;
  reconcile: (options: ReconcileOptionsInput) => Promise<ReconcileReport>;
  log?: (message: string) => void;
}

export function createStripeReconcileHandler(deps: StripeReconcileDeps): (req: Request) => Promise<Response> {
  const log = deps.log ?? console.error;

  return async (req: Request): Promise<Response> => {
    if (!(await hasBearerSecret(req, deps.serviceRoleKey))) {
      return jsonError(401, "the service-role key is required as a Bearer token");
    }
    if (req.method !== "POST") return jsonError(405, `method ${req.method} not allowed: use POST`);

    const body = await readBodyText(req, MAX_BODY_BYTES);
    if (body === null) return jsonError(413, `body larger than ${MAX_BODY_BYTES} bytes`);
    let json: unknown;
    try {
      json = body.trim() === "" ? {} : JSON.parse(body);
    } catch {
      return jsonError(400, "body is not JSON");
    }
    const options = reconcileOptionsSchema.safeParse(json);
    if (!options.success) {
      return jsonError(400, "invalid options", { issues: z.treeifyError(options.error) });
    }

    try {
      const report = await deps.reconcile(options.data);
      return Response.json(report, { status: report.ok ? 200 : 500 });
    } catch (err) {
      log(`stripe-reconcile: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
      return jsonError(500, "reconciliation failed unexpectedly; see the function logs");
    }
  };
}
