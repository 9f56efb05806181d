-- Test: public.credit_packages: columns, constraints, RLS (signed-in users read every package, anon nothing) and no write path for any API role.
begin;
select plan(28);

select tests.create_user() as u1 \gset

select has_table('public', 'credit_packages', 'public.credit_packages exists');
select col_type_is('public', 'credit_packages', c, t, format('credit_packages.%s is %s', c, t))
from (values ('id', 'uuid'), ('stripe_price_id', 'text'), ('credits', 'bigint'), ('amount_cents', 'bigint'),
             ('currency', 'text'), ('active', 'boolean')) as v(c, t);
select col_is_pk('public', 'credit_packages', 'id', 'credit_packages is keyed by id');
select col_is_unique('public', 'credit_packages', 'stripe_price_id', 'one package per Stripe Price');
select ok((select relrowsecurity from pg_class where oid = 'public.credit_packages'::regclass), 'RLS is enabled');
select policies_are('public', 'credit_packages', array['Authenticated users can read the credit packages'],
  'the only policy lets signed-in users read');
select policy_cmd_is('public', 'credit_packages', 'Authenticated users can read the credit packages', 'select',
  'the policy is for select');
select policy_roles_are('public', 'credit_packages', 'Authenticated users can read the credit packages',
  array['authenticated'], 'the policy is for authenticated only');

-- Constraints.
select throws_ok($$insert into public.credit_packages (name, stripe_price_id, credits, amount_cents)
  values ('x', 'price_bad0', 0, 100)$$, '23514', null, 'credits must be positive');
select throws_ok($$insert into public.credit_packages (name, stripe_price_id, credits, amount_cents)
  values ('x', 'prod_123', 10, 100)$$, '23514', null, 'the Stripe id must be a Price id');
select throws_ok($$insert into public.credit_packages (name, stripe_price_id, credits, amount_cents, currency)
  values ('x', 'price_cur1', 10, 100, 'USD')$$, '23514', null, 'currency is a lowercase ISO code');
select throws_ok($$insert into public.credit_packages (name, stripe_price_id, credits, amount_cents)
  values ('x', 'price_neg1', 10, -1)$$, '23514', null, 'the amount cannot be negative');

insert into public.credit_packages (id, name, stripe_price_id, credits, amount_cents, active) values
  ('00000000-0000-4000-8000-00000000a600', 'Starter', 'price_pgtap_starter', 100, 199, true),
  ('00000000-0000-4000-8000-00000000a601', 'Retired', 'price_pgtap_retired', 50, 99, false);
select throws_ok($$insert into public.credit_packages (name, stripe_price_id, credits, amount_cents)
  values ('dup', 'price_pgtap_starter', 10, 100)$$, '23505', null, 'a Price is sold by one package only');

-- Privileges: read for authenticated and service_role, nothing else for anyone.
select table_privs_are('public', 'credit_packages', 'anon', '{}', 'anon has no privilege');
select table_privs_are('public', 'credit_packages', 'authenticated', array['SELECT'], 'authenticated may only select');
select table_privs_are('public', 'credit_packages', 'service_role', array['SELECT'], 'service_role may only select');

select tests.authenticate_as(:'u1');
select results_eq(
  $$select stripe_price_id, active from public.credit_packages
    where stripe_price_id like 'price_pgtap_%' order by stripe_price_id$$,
  $$values ('price_pgtap_retired'::text, false), ('price_pgtap_starter', true)$$,
  'a signed-in user reads every package, active flag included'
);
select throws_ok($$insert into public.credit_packages (name, stripe_price_id, credits, amount_cents)
  values ('mine', 'price_pgtap_mine', 1000000, 1)$$, '42501', null, 'a user cannot create a package');
select throws_ok($$update public.credit_packages set credits = 1000000$$, '42501', null,
  'a user cannot change a package');
select throws_ok($$delete from public.credit_packages$$, '42501', null, 'a user cannot delete a package');

select tests.clear_authentication();
select throws_ok($$select count(*) from public.credit_packages$$, '42501', null, 'anon cannot read packages');

select tests.authenticate_as_service_role();
select is((select count(*)::int from public.credit_packages where stripe_price_id like 'price_pgtap_%'), 2,
  'service_role reads the packages');
select throws_ok($$update public.credit_packages set active = true$$, '42501', null,
  'service_role cannot change a package either');
select tests.reset_identity();

select * from finish();
rollback;
