-- Why: the webhook inbox, settings, run history and repair log are internal. They live in a
-- schema that the Data API does not expose and that no API role may use; only the
-- package's SECURITY DEFINER functions (owned by postgres) read and write them.

create schema if not exists credit_private;
revoke all on schema credit_private from public, anon, authenticated, service_role;

comment on schema credit_private is
  'Internal state of the Stripe credits package. Not exposed by the Data API; reached only through the package''s RPCs.';
