-- Test: search_path hijack: with decoys of every package function, table and of the built-ins placed first on the path, every package function behaves exactly as before.
-- Decoys are created in public and in a schema placed BEFORE pg_catalog on the search_path
-- (the only way a name could shadow a built-in): a function of the package, the tables it
-- reads, now(), gen_random_uuid(), lower(), the = operator on uuid and text... Each decoy
-- raises 'hijacked: <name>'. Every function of the package (found in the catalog) is then
-- called with the same arguments under the normal and under the hijacked search_path, each
-- call in a subtransaction rolled back; the answers (or errors) must be identical. They are,
-- because every function pins search_path = '' and names everything schema-qualified.
begin;
select plan(6);

select tests.create_user() as u \gset

-- A purchase, a refund and a spend, so that the functions find real rows to work on.
create temporary table setup_result as
select public.handle_stripe_event(jsonb_build_object(
  'id', 'evt_t910_pay', 'type', 'checkout.session.completed', 'created', 1780000000,
  'data', jsonb_build_object('object', jsonb_build_object(
    'id', 'cs_t910', 'client_reference_id', :'u', 'payment_status', 'paid', 'payment_intent', 'pi_t910',
    'amount_total', 1000, 'currency', 'usd', 'metadata', jsonb_build_object('credits', '100'))))) as result;
insert into setup_result select public.spend_credits(:'u', 7, 't910-spend', 'hijack test');

-- The answer of one call under a search_path, normalized (ids, timestamps, durations and
-- generated numbers differ from call to call), its effects always rolled back.
create function pg_temp.outcome(p_call text, p_search_path text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_result text;
  v_error text;
begin
  begin
    perform pg_catalog.set_config('search_path', p_search_path, true);
    execute p_call into v_result;
    perform pg_catalog.set_config('search_path', '', true);
    raise exception 'probe rolled back' using errcode = 'TT900';
  exception
    when sqlstate 'TT900' then
      null;
    when others then
      v_error := pg_catalog.format('error %s: %s', sqlstate, sqlerrm);
  end;
  return pg_catalog.regexp_replace(pg_catalog.regexp_replace(pg_catalog.regexp_replace(pg_catalog.regexp_replace(
    coalesce(v_error, 'ok: ' || coalesce(v_result, 'null')),
    '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}', 'UUID', 'g'),
    '[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9]{2}(:[0-9]{2})?)?', 'TS', 'g'),
    '[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]+', 'DURATION', 'g'),
    '"(id|run_id|call_id|monitor_run_id|repair_run_id)": [0-9]+', '"\1": N', 'g');
end;
$$;

-- Every function of the package, called positionally with a harmless value per argument
-- (booleans true, so every repair is a dry run; uuids the test user's). Types are written
-- schema-qualified (built with an empty search_path), so the decoys cannot change the calls.
set local search_path = '';
create temporary table probe_call as
select p.oid::regprocedure::text as signature,
  format('select pg_catalog.array_to_string(pg_catalog.array_agg(t::text), %L) from %I.%I(%s) as t', ';',
    n.nspname, p.proname,
    coalesce((
      select string_agg(
        case a.type
          when 'uuid'::regtype then format('%L::uuid', :'u')
          when 'text'::regtype then '''t910''::text'
          when 'bigint'::regtype then '1::bigint'
          when 'integer'::regtype then '1::integer'
          when 'numeric'::regtype then '1::numeric'
          when 'boolean'::regtype then 'true'
          when 'jsonb'::regtype then '''{}''::jsonb'
          when 'timestamp with time zone'::regtype then '''2026-01-01''::timestamptz'
          when 'interval'::regtype then '''1 hour''::interval'
          when 'regclass'::regtype then '''public.credit_transaction''::regclass'
          else format('null::%s', format_type(a.type, null))
        end, ', ' order by a.ord)
      from unnest(p.proargtypes::oid[]) with ordinality as a (type, ord)
    ), '')) as call
from pg_proc p
join pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'credit_private') and p.prokind = 'f'
  and p.prorettype <> 'trigger'::regtype
  and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e');

-- And the main paths with real payloads: a payment, a refund, a dispute, a spend, the
-- diagnosis and the repairs.
insert into probe_call (signature, call) values
  ('scenario: checkout paid', format($q$select public.handle_stripe_event(%L::jsonb)::text$q$, jsonb_build_object(
    'id', 'evt_t910_pay2', 'type', 'checkout.session.completed', 'created', 1780000001,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'cs_t910_2', 'client_reference_id', :'u', 'payment_status', 'paid', 'payment_intent', 'pi_t910_2',
      'amount_total', 500, 'currency', 'usd', 'metadata', jsonb_build_object('credits', '50')))))),
  ('scenario: refund', format($q$select public.handle_stripe_event(%L::jsonb)::text$q$, jsonb_build_object(
    'id', 'evt_t910_refund', 'type', 'charge.refunded', 'created', 1780000002,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'ch_t910', 'payment_intent', 'pi_t910', 'amount', 1000, 'amount_refunded', 300, 'currency', 'usd'))))),
  ('scenario: dispute', format($q$select public.handle_stripe_event(%L::jsonb)::text$q$, jsonb_build_object(
    'id', 'evt_t910_dispute', 'type', 'charge.dispute.created', 'created', 1780000003,
    'data', jsonb_build_object('object', jsonb_build_object(
      'id', 'dp_t910', 'payment_intent', 'pi_t910', 'amount', 1000, 'status', 'needs_response'))))),
  ('scenario: spend', format($q$select public.spend_credits(%L::uuid, 5, 't910-spend-2', 'x')::text$q$, :'u')),
  ('scenario: spend replay', format($q$select public.spend_credits(%L::uuid, 7, 't910-spend', 'x')::text$q$, :'u')),
  ('scenario: overdraft', format($q$select public.spend_credits(%L::uuid, 1000000, 't910-spend-3', 'x')::text$q$, :'u')),
  ('scenario: diagnosis', 'select (public.diagnose_credits() - ''generated_at'')::text'),
  ('scenario: fix_all', 'select (public.fix_all_credits(false, ''t910'', ''hijack test'') - ''run_id'')::text'),
  ('scenario: replay', 'select public.replay_stripe_event(''evt_t910_pay'')::text');

reset search_path;

create temporary table probe_result (signature text, phase text, outcome text);

-- Phase 1: the normal search_path of a session, twice: a function whose answer differs
-- between two plain calls (it returns a generated number) is compared without its numbers.
insert into probe_result
select signature, 'normal', pg_temp.outcome(call, '"$user", public, extensions') from probe_call;
insert into probe_result
select signature, 'normal again', pg_temp.outcome(call, '"$user", public, extensions') from probe_call;

-- Phase 2: the decoys.
create schema hijack;
create table hijack.probe_marker (id integer);

-- A decoy of every package function, in the hijack schema and in public (where public does
-- not hold the real function with that signature), with the same arguments and result.
do $$
declare
  v record;
  v_schema text;
begin
  for v in
    select p.proname, pg_get_function_arguments(p.oid) as args, pg_get_function_result(p.oid) as result,
      oidvectortypes(p.proargtypes) as identity
    from pg_proc p join pg_namespace n on n.oid = p.pronamespace
    where n.nspname in ('public', 'credit_private') and p.prokind = 'f' and p.prorettype <> 'trigger'::regtype
      and not exists (select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e')
  loop
    foreach v_schema in array array['hijack', 'public'] loop
      if to_regprocedure(format('%I.%I(%s)', v_schema, v.proname, v.identity)) is null then
        execute format(
          'create function %I.%I(%s) returns %s language plpgsql as $d$ begin raise exception %L; end $d$',
          v_schema, v.proname, v.args, v.result, 'hijacked: ' || v.proname);
      end if;
    end loop;
  end loop;
end;
$$;

-- A decoy of every package table and view, empty, in the hijack schema and (for the private
-- ones) in public: a function that read one unqualified would see no rows.
do $$
declare
  v record;
begin
  for v in
    select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('public', 'credit_private') and c.relkind in ('r', 'p', 'v')
  loop
    execute format('create table hijack.%I (like %I.%I)', v.relname, v.nspname, v.relname);
    if to_regclass(format('public.%I', v.relname)) is null then
      execute format('create table public.%I (like %I.%I)', v.relname, v.nspname, v.relname);
    end if;
  end loop;
end;
$$;

-- Decoys of the built-ins the package uses, and of auth's helpers, in both schemas.
do $$
declare
  v_schema text;
  v_decoy text;
begin
  foreach v_schema in array array['hijack', 'public'] loop
    foreach v_decoy in array array[
      'now() returns timestamptz', 'clock_timestamp() returns timestamptz', 'gen_random_uuid() returns uuid',
      'lower(text) returns text', 'upper(text) returns text', 'btrim(text) returns text',
      'length(text) returns integer', 'floor(numeric) returns numeric', 'jsonb_typeof(jsonb) returns text',
      'jsonb_array_length(jsonb) returns integer', 'to_jsonb(anyelement) returns jsonb',
      'to_timestamp(double precision) returns timestamptz', 'current_setting(text, boolean) returns text',
      'set_config(text, text, boolean) returns text', 'pg_advisory_xact_lock(bigint) returns void',
      'hashtextextended(text, bigint) returns bigint', 'format(text) returns text',
      'jsonb_strip_nulls(jsonb) returns jsonb', 'uid() returns uuid', 'role() returns text', 'jwt() returns jsonb',
      'uuid_eq(uuid, uuid) returns boolean', 'texteq(text, text) returns boolean'
    ] loop
      execute format('create function %I.%s language plpgsql as $d$ begin raise exception %L; end $d$',
        v_schema, v_decoy, 'hijacked: ' || split_part(v_decoy, '(', 1));
    end loop;
  end loop;
end;
$$;
create operator hijack.= (leftarg = uuid, rightarg = uuid, function = hijack.uuid_eq);
create operator hijack.= (leftarg = text, rightarg = text, function = hijack.texteq);

insert into probe_result
select signature, 'hijacked', pg_temp.outcome(call, 'hijack, public, extensions, pg_catalog') from probe_call;

select ok(
  (select count(*) from probe_call) >= 100,
  'every function of the package is probed (' || (select count(*) from probe_call) || ' calls)');

-- The decoys are live: code that did NOT pin its search_path would hit them.
select matches(
  pg_temp.outcome('select now()::text', 'hijack, public, extensions, pg_catalog'),
  'hijacked: now', 'an unqualified now() on the hijacked path reaches the decoy');
select matches(
  pg_temp.outcome(format('select (%L::uuid = %L::uuid)::text', :'u', :'u'), 'hijack, public, extensions, pg_catalog'),
  'hijacked: uuid_eq', 'so does the = operator on uuid');

select is(
  array(select h.signature || ': ' || h.outcome from probe_result h
        where h.phase = 'hijacked' and h.outcome ~ 'hijacked: ' order by 1),
  '{}'::text[], 'no package function reaches any decoy');

-- Compared as is, or without numbers where two plain calls already differ.
create temporary view probe_difference as
select n.signature, n.outcome as normal, h.outcome as hijacked
from probe_result n
join probe_result a on a.signature = n.signature and a.phase = 'normal again'
join probe_result h on h.signature = n.signature and h.phase = 'hijacked'
where n.phase = 'normal'
  and case when n.outcome = a.outcome then n.outcome is distinct from h.outcome
           else regexp_replace(n.outcome, '[0-9]+', 'N', 'g') is distinct from regexp_replace(h.outcome, '[0-9]+', 'N', 'g')
      end;

select is(
  array(select d.signature || E'\n  normal:   ' || d.normal || E'\n  hijacked: ' || d.hijacked
        from probe_difference d where d.signature !~ '^scenario' order by 1),
  '{}'::text[], 'every function of the package answers the same with the decoys in place');

select is(
  array(select d.signature || E'\n  normal:   ' || d.normal || E'\n  hijacked: ' || d.hijacked
        from probe_difference d where d.signature ~ '^scenario' order by 1),
  '{}'::text[], 'payments, refunds, disputes, spends, the diagnosis and the repairs give the same results');

select * from finish();
rollback;
