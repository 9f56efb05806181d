-- Why: PostgreSQL grants EXECUTE on every new function to PUBLIC, and the Supabase platform's
-- default privileges grant it to anon, authenticated and service_role as well. Every function
-- of this package must be callable only by the roles it is granted to explicitly, so both
-- defaults are removed once, here, before any function exists.

alter default privileges for role postgres revoke execute on functions from public;
alter default privileges for role postgres in schema public
  revoke execute on functions from anon, authenticated, service_role;
