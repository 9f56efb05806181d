-- Runs plpgsql_check on every PL/pgSQL function of the package's schemas and prints one
-- line per problem; no output means every function passed.
select format('%s: %s %s (line %s) %s', p.oid::regprocedure, r.level, r.message, r.lineno, coalesce(r.hint, ''))
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
join pg_catalog.pg_language l on l.oid = p.prolang
cross join lateral plpgsql_check_function_tb(p.oid, fatal_errors => false) r
where l.lanname = 'plpgsql'
  and n.nspname in ('public', 'credit_private')
  and p.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype
  and r.level in ('error', 'warning');
