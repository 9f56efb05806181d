// The local stack the tests run against, as exported by scripts/test.sh.
function required(name: string): string {
  const value = Deno.env.get(name);
  if (!value) throw new Error(`tests need ${name}: run them with npm test`);
  return value;
}

export const stack = {
  url: required("SUPABASE_URL"),
  anonKey: required("SUPABASE_ANON_KEY"),
  serviceRoleKey: required("SUPABASE_SERVICE_ROLE_KEY"),
  /** postgres, the role migrations run as: owns the package's objects. */
  dbUrl: required("SUPABASE_DB_URL"),
  webhookSecret: required("STRIPE_WEBHOOK_SECRET"),
  functionUrl: (name: string) => `${required("SUPABASE_URL")}/functions/v1/${name}`,
};
