// Access tokens for the tests, signed with the stack's JWT secret the way Supabase Auth signs
// them (HS256, role authenticated, sub = the user's id).
import { signJwt } from "../../../../local/gateway/jwt.ts";

function jwtSecret(): string {
  const secret = Deno.env.get("JWT_SECRET");
  if (!secret) throw new Error("tests need JWT_SECRET: run them with npm test");
  return secret;
}

export async function userAccessToken(
  userId: string,
  extraClaims: Record<string, unknown> = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await signJwt({
    aud: "authenticated",
    exp: now + 3600,
    iat: now,
    iss: "supabase-demo",
    role: "authenticated",
    sub: userId,
    ...extraClaims,
  }, jwtSecret());
}
