// Reads and validates a function's environment once, failing fast with a message that names
// the missing or malformed variables and never their values (they are secrets).
import { z } from "zod";

export class EnvError extends Error {}

export function readEnv<Shape extends z.ZodRawShape>(
  shape: Shape,
  source: Record<string, string> = Deno.env.toObject(),
): z.infer<z.ZodObject<Shape>> {
  const result = z.object(shape).safeParse(source);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new EnvError(`invalid environment: ${problems.join("; ")}`);
  }
  return result.data;
}

/** The variables every function that calls the database through supabase-js needs. */
export const supabaseEnv = {
  SUPABASE_URL: z.url(),
  SUPABASE_SERVICE_ROLE_KEY: z.string().min(20),
};
