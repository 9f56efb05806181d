-- Why: the admin endpoint's tables and RPCs are part of the installation: a grant revoked from
-- service_role would make every admin call fail, and an audit or throttle table readable by
-- an API role would leak who repaired what. Registered with the installation check, they are
-- reported by public.diagnose_credits and restored by public.restore_credit_installation like
-- every other object of the package.

select credit_private.expect_table(t, '{}', '20261126004900_register_admin_expected_objects')
from unnest(array['credit_private.admin_auth_failure', 'credit_private.admin_audit_log']::regclass[]) as t;

-- The RPCs: SECURITY DEFINER, for the admin endpoint (service_role) only.
select credit_private.expect_function(f, true, '{service_role}', '20261126004900_register_admin_expected_objects')
from unnest(array[
  'public.record_admin_auth_attempt(text,boolean)',
  'public.log_admin_call(text,text,text,text,jsonb,boolean,text,text,integer,text)',
  'public.finish_admin_call(bigint,text,integer,text,bigint,bigint,uuid)'
]::regprocedure[]) as f;
