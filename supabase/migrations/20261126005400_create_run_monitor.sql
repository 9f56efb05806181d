-- Why: the guide's 15-minute cron script, inside the database: the incremental check, then
-- the safe repairs the settings allow, then what is left is alerted and one row is written
-- to the history. Repairs go through issue 3's runner (credit_private.run_repair: the same
-- locks, exactly-once paths and audit rows as a human's repair, actor payment-monitor), one
-- target at a time, so the run costs what it found, never a scan of the ledger. Every step
-- runs in its own subtransaction: a step that raises is rolled back alone, and its error is
-- recorded in the run row, alerted and logged as a warning; the run row itself is never lost.

-- One automatic repair of one target, through the repair runner, with its outcome. An error
-- is returned (outcome failed, with SQLSTATE and message) for the caller to record and alert.
create function credit_private.monitor_repair(p_run_id bigint, p_category text, p_action text, p_target text)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_result jsonb;
  v_after text;
  v_state text;
  v_message text;
begin
  begin
    v_result := credit_private.run_repair(p_action, p_target, false, 'payment-monitor',
      format('monitor run %s: automatic repair (settings.auto_*)', p_run_id));
  exception when others then
    -- Not swallowed: the repair's subtransaction is rolled back (no partial change) and the
    -- error is handed back, to be written to the run's errors and alerted.
    get stacked diagnostics v_state = returned_sqlstate, v_message = message_text;
    return jsonb_build_object('category', p_category, 'action', p_action, 'target', p_target,
      'outcome', 'failed', 'changed', 0, 'sqlstate', v_state, 'message', v_message);
  end;

  v_after := v_result #>> '{changes,0,after,status}';
  return jsonb_build_object(
    'category', p_category, 'action', p_action, 'target', p_target,
    'outcome', case
      when p_action = 'retry_failed_webhooks' and (v_result ->> 'changed')::integer > 0 and v_after = 'failed'
        then 'failed_again'
      when (v_result ->> 'changed')::integer > 0 then 'repaired'
      when jsonb_array_length(v_result -> 'skipped') > 0 then 'skipped'
      else 'unchanged'
    end,
    'changed', case when v_after = 'failed' then 0 else (v_result ->> 'changed')::integer end,
    'repair_run_id', v_result -> 'run_id',
    'detail', coalesce(v_result #>> '{changes,0,detail}', v_result #>> '{skipped,0,reason}'));
end;
$$;

revoke execute on function credit_private.monitor_repair(bigint, text, text, text) from public, anon, authenticated, service_role;

comment on function credit_private.monitor_repair(bigint, text, text, text) is
  'Runs one repair (run_repair, not a dry run, actor payment-monitor, reason naming the monitor run) for one target and returns {category, action, target, outcome: repaired | failed_again | skipped | unchanged | failed, changed, repair_run_id, detail, sqlstate?, message?}. An error is rolled back and returned as outcome failed, never raised.';

-- The targets of a repair: what this run found, and what the open unrepaired alert still
-- tracks (a repair that failed or was switched off is tried again by later runs, although
-- the rows left the check's window).
create function credit_private.monitor_repair_targets(p_category text, p_report jsonb)
returns setof text
language sql
stable
security invoker
set search_path = ''
as $$
  select t.id
  from (
    select credit_private.monitor_finding_id(p_category, f) as id
    from jsonb_array_elements(coalesce(p_report #> array['categories', p_category, 'findings'], '[]'::jsonb)) f
    union
    select i.id
    from credit_private.monitor_alert a
      cross join lateral jsonb_array_elements_text(coalesce(a.details -> 'ids', '[]'::jsonb)) as i (id)
    where a.fingerprint = 'unrepaired:' || p_category and a.status = 'open'
  ) t
  where t.id is not null
  order by t.id
$$;

revoke execute on function credit_private.monitor_repair_targets(text, jsonb) from public, anon, authenticated, service_role;

comment on function credit_private.monitor_repair_targets(text, jsonb) is
  'The ids a run repairs in a category: its findings in the run''s report and the ids the category''s open unrepaired alert tracks.';

-- Why each remaining finding is left, and whether it alerts as unrepaired.
create function credit_private.monitor_remaining_reason(
  p_category text,
  p_finding jsonb,
  p_settings credit_private.settings,
  p_repair jsonb,
  out reason text,
  out alert boolean
)
language plpgsql
immutable
security invoker
set search_path = ''
as $$
declare
  v_auto boolean := (credit_private.monitor_category_settings(p_settings, p_category)).auto_repair;
  v_attempts bigint;
  v_due timestamptz;
begin
  alert := true;
  if p_repair ->> 'outcome' = 'failed' then
    reason := format('the repair failed: %s %s', p_repair ->> 'sqlstate', p_repair ->> 'message');
    return;
  end if;
  if p_repair ->> 'outcome' = 'skipped' then
    reason := p_repair ->> 'detail';
    return;
  end if;

  case p_category
    when 'failed_webhooks' then
      v_attempts := coalesce((p_finding ->> 'attempts')::bigint, 0);
      v_due := credit_private.webhook_retry_due_at(v_attempts, (p_finding ->> 'updated_at')::timestamptz, p_settings);
      if p_finding ->> 'status' = 'deferred' then
        reason := 'deferred: its payment was never credited; needs a human (see suggested_action)';
      elsif coalesce((p_finding ->> 'needs_a_human')::boolean, false) then
        reason := format('needs a human: SQLSTATE %s is in settings.retry_skip_error_codes', p_finding ->> 'last_error_code');
      elsif not v_auto then
        reason := 'automatic retries are switched off (settings.auto_retry_failed_webhooks)';
      elsif v_attempts >= p_settings.webhook_retry_max_attempts then
        reason := format('retries exhausted: %s attempts (settings.webhook_retry_max_attempts = %s)',
          v_attempts, p_settings.webhook_retry_max_attempts);
      elsif p_repair ->> 'outcome' = 'failed_again' or v_attempts >= 2 then
        reason := format('failed again (%s attempts); next automatic retry after %s', v_attempts, v_due);
      else
        reason := format('failed once; retried automatically after %s', v_due);
        alert := false;
      end if;
    when 'dangling_recharge_entries' then
      reason := 'never repaired automatically: no completed payment justifies these credits';
    when 'stuck_recharges' then
      reason := 'never repaired automatically: a pending recharge is no proof of payment';
      alert := false;
    when 'negative_balances' then
      reason := 'never repaired automatically (a refund or lost dispute may take a balance below zero)';
      alert := false;
    when 'installation' then
      if not coalesce((p_finding ->> 'repairable')::boolean, false) then
        reason := 'a restore cannot fix this: ' || coalesce(p_finding ->> 'suggested_action', 'see the installation check');
      elsif not v_auto then
        reason := 'automatic restore is switched off (settings.auto_restore_installation): run public.restore_credit_installation';
      else
        reason := 'still wrong after the automatic restore';
      end if;
    else
      if not v_auto then
        reason := format('automatic repair is switched off (settings.%s)', case p_category
          when 'orphaned_recharges' then 'auto_fix_orphaned_recharges' else 'auto_recompute_balances' end);
      elsif p_repair is null then
        reason := 'not repaired by this run (found by an earlier one); see suggested_action';
      else
        reason := 'still wrong after the automatic repair';
      end if;
  end case;
end;
$$;

revoke execute on function credit_private.monitor_remaining_reason(text, jsonb, credit_private.settings, jsonb)
  from public, anon, authenticated, service_role;

comment on function credit_private.monitor_remaining_reason(text, jsonb, credit_private.settings, jsonb) is
  'Why a finding is still there after a run (switched off, needs a human, repair failed, retries exhausted, failed again...) and whether it alerts as unrepaired: a failed webhook waiting for its first automatic retry, stuck recharges and negative balances do not.';

-- What is left, per category, after the run's repairs: the findings of this run and the ids
-- the open unrepaired alert tracks, re-read as they are now, each with its reason.
create function credit_private.monitor_remaining(
  p_settings credit_private.settings,
  p_report jsonb,
  p_repairs jsonb
)
returns jsonb
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_category text;
  v_listed jsonb;
  v_tracked jsonb;
  v_full boolean;
  v_rows jsonb;
  v_beyond bigint;
  v_result jsonb := '{}'::jsonb;
begin
  for v_category in select c.category from credit_private.monitor_categories() c order by c.sort_order loop
    v_listed := coalesce(p_report #> array['categories', v_category, 'findings'], '[]'::jsonb);
    select a.details into v_tracked
    from credit_private.monitor_alert a
    where a.fingerprint = 'unrepaired:' || v_category and a.status = 'open';
    -- Findings beyond the batch were never listed, so their ids are unknown: until the
    -- category is clean again it is read whole (the only case a run reads a whole view).
    v_beyond := greatest(coalesce((p_report #>> array['categories', v_category, 'count'])::bigint, 0)
      - jsonb_array_length(v_listed), 0);
    v_full := v_beyond > 0 or coalesce((v_tracked ->> 'beyond_batch')::bigint, 0) > 0;

    select coalesce(jsonb_agg(jsonb_build_object(
        'id', credit_private.monitor_finding_id(v_category, f.finding),
        'line', credit_private.monitor_finding_line(v_category, f.finding),
        'weight', credit_private.monitor_finding_weight(v_category, f.finding),
        'reason', r.reason,
        'alert', r.alert,
        'suggested_action', f.finding ->> 'suggested_action')
      order by credit_private.monitor_finding_weight(v_category, f.finding) desc,
        credit_private.monitor_finding_id(v_category, f.finding)), '[]'::jsonb)
    into v_rows
    from credit_private.monitor_current_findings(
        v_category,
        array(
          select credit_private.monitor_finding_id(v_category, l.finding)
          from jsonb_array_elements(v_listed) l (finding)
          union
          select t.id from jsonb_array_elements_text(coalesce(v_tracked -> 'ids', '[]'::jsonb)) t (id)
        ),
        v_full,
        p_settings.monitor_repair_batch::integer
      ) f (finding)
      cross join lateral credit_private.monitor_remaining_reason(
        v_category, f.finding, p_settings,
        (select x from jsonb_array_elements(p_repairs) x
         where x ->> 'category' = v_category
           and (x ->> 'target' = credit_private.monitor_finding_id(v_category, f.finding) or x ->> 'target' is null)
         limit 1)
      ) r;

    -- Read whole, the rows are the truth; a category found beyond the batch counts what it
    -- could not list.
    if v_full and v_category not in ('failed_webhooks', 'installation') then
      v_beyond := greatest(v_beyond - jsonb_array_length(v_rows), 0);
    end if;
    if v_category in ('failed_webhooks', 'installation') then
      v_beyond := 0;
    end if;

    v_result := v_result || jsonb_build_object(v_category, jsonb_build_object(
      'count', jsonb_array_length(v_rows) + v_beyond,
      'beyond_batch', v_beyond,
      'rows', v_rows));
  end loop;
  return v_result;
end;
$$;

revoke execute on function credit_private.monitor_remaining(credit_private.settings, jsonb, jsonb)
  from public, anon, authenticated, service_role;

comment on function credit_private.monitor_remaining(credit_private.settings, jsonb, jsonb) is
  'Per category, what is left after a run''s repairs: {count, beyond_batch, rows: [{id, line, weight, reason, alert, suggested_action}]} worst first, from the run''s findings and the ids its open unrepaired alert tracks, re-read by index (failed webhooks and installation are read whole; a category whose findings overflowed the batch too).';

-- Raises, deduplicates and resolves the alerts of one run.
create function credit_private.monitor_update_alerts(
  p_run_id bigint,
  p_settings credit_private.settings,
  p_check_ok boolean,
  p_findings jsonb,
  p_remaining jsonb,
  p_errors jsonb,
  p_run jsonb
)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_category record;
  v_rows jsonb;
  v_beyond bigint;
  v_count bigint;
  v_found bigint;
  v_threshold bigint;
  v_step text;
  v_fingerprint text;
  v_outcomes jsonb := '[]'::jsonb;
begin
  for v_category in select * from credit_private.monitor_categories() c order by c.sort_order loop
    -- 1. What is left and alert-worthy: one unrepaired alert per category.
    v_fingerprint := 'unrepaired:' || v_category.category;
    if p_remaining ? v_category.category then
      select coalesce(jsonb_agg(r order by (r ->> 'weight')::numeric desc, r ->> 'id'), '[]'::jsonb)
      into v_rows
      from jsonb_array_elements(p_remaining #> array[v_category.category, 'rows']) r
      where (r ->> 'alert')::boolean;
      v_beyond := coalesce((p_remaining #>> array[v_category.category, 'beyond_batch'])::bigint, 0);
      v_count := jsonb_array_length(v_rows) + v_beyond;
      if v_category.alerts_unrepaired and v_count > 0 then
        v_outcomes := v_outcomes || jsonb_build_object('fingerprint', v_fingerprint,
          'outcome', credit_private.raise_monitor_alert(
            v_fingerprint, 'unrepaired', v_category.category, v_category.unrepaired_severity,
            md5(v_beyond || '|' || array_to_string(array(select r ->> 'id' from jsonb_array_elements(v_rows) r order by 1), '|')),
            case v_category.category
              when 'dangling_recharge_entries' then format('%s: %s need a human (never repaired automatically)',
                v_category.label, v_count)
              when 'failed_webhooks' then format('%s: %s keep failing or need a human', v_category.label, v_count)
              else format('%s: %s could not be repaired', v_category.label, v_count)
            end,
            jsonb_build_object(
              'count', v_count,
              'beyond_batch', v_beyond,
              'rows', (select coalesce(jsonb_agg(r - 'alert' - 'weight'), '[]'::jsonb)
                       from jsonb_array_elements(jsonb_path_query_array(v_rows, '$[0 to 9]')) r),
              'ids', (select coalesce(jsonb_agg(r -> 'id'), '[]'::jsonb) from jsonb_array_elements(v_rows) r),
              'suggested_action', case
                when v_beyond > 0 then format(
                  '%s more beyond settings.monitor_repair_batch: run select public.fix_all_credits(dry_run => false, actor => ''...'', reason => ''...''); and read public.diagnose_credits().', v_beyond)
                else v_rows #>> '{0,suggested_action}'
              end),
            p_run_id, p_run));
      elsif credit_private.resolve_monitor_alert(v_fingerprint, p_run_id, p_run) then
        v_outcomes := v_outcomes || jsonb_build_object('fingerprint', v_fingerprint, 'outcome', 'resolved');
      end if;
    end if;

    -- 2. Thresholds, on what this run's check found (repaired or not).
    if p_check_ok then
      v_fingerprint := 'threshold:' || v_category.category;
      v_found := coalesce((p_findings ->> v_category.category)::bigint, 0);
      v_threshold := (credit_private.monitor_category_settings(p_settings, v_category.category)).threshold;
      if v_threshold > 0 and v_found >= v_threshold then
        v_outcomes := v_outcomes || jsonb_build_object('fingerprint', v_fingerprint,
          'outcome', credit_private.raise_monitor_alert(
            v_fingerprint, 'threshold', v_category.category, 'warning',
            -- Constant: a burst alerts once while it lasts (reminders aside), not at every count.
            'threshold',
            format('%s: %s found in one run (threshold %s), %s repaired', v_category.label, v_found, v_threshold,
              coalesce((p_run #>> array['repaired', v_category.category])::bigint, 0)),
            jsonb_build_object(
              'count', v_found,
              'threshold', v_threshold,
              'remaining', coalesce((p_remaining #>> array[v_category.category, 'count'])::bigint, 0),
              'rows', (select coalesce(jsonb_agg(r - 'alert' - 'weight'), '[]'::jsonb)
                       from jsonb_array_elements(jsonb_path_query_array(
                         coalesce(p_remaining #> array[v_category.category, 'rows'], '[]'::jsonb), '$[0 to 9]')) r),
              'suggested_action', format(
                'Many %s at once usually means a systematic cause (a broken deployment, a revoked grant, Stripe or the network): read the run history (credit_private.monitor_latest_runs) and the diagnosis.',
                lower(v_category.label))),
            p_run_id, p_run));
      elsif credit_private.resolve_monitor_alert(v_fingerprint, p_run_id, p_run) then
        v_outcomes := v_outcomes || jsonb_build_object('fingerprint', v_fingerprint, 'outcome', 'resolved');
      end if;
    end if;
  end loop;

  -- 3. Step errors: one alert per failing step, resolved by the next run that passes it.
  for v_step in select distinct e ->> 'step' from jsonb_array_elements(p_errors) e order by 1 loop
    v_fingerprint := 'run_error:' || v_step;
    v_outcomes := v_outcomes || jsonb_build_object('fingerprint', v_fingerprint,
      'outcome', credit_private.raise_monitor_alert(
        v_fingerprint, 'run_error', 'monitor', 'critical',
        (select string_agg(distinct e ->> 'sqlstate', ',') from jsonb_array_elements(p_errors) e where e ->> 'step' = v_step),
        (select format('Monitor step %s failed: %s (SQLSTATE %s)%s', v_step, e ->> 'message', e ->> 'sqlstate',
           case when count(*) over () > 1 then format(' and %s more', count(*) over () - 1) else '' end)
         from jsonb_array_elements(p_errors) e where e ->> 'step' = v_step limit 1),
        jsonb_build_object(
          'count', (select count(*) from jsonb_array_elements(p_errors) e where e ->> 'step' = v_step),
          'rows', (select coalesce(jsonb_agg(jsonb_build_object(
                      'id', coalesce(e ->> 'target', v_step),
                      'line', format('%s%s: SQLSTATE %s: %s', v_step, coalesce(' ' || (e ->> 'target'), ''),
                        e ->> 'sqlstate', e ->> 'message'),
                      'reason', e ->> 'context')), '[]'::jsonb)
                   from (select e from jsonb_array_elements(p_errors) e where e ->> 'step' = v_step limit 10) x),
          'suggested_action', 'The error is recorded in credit_private.monitor_run.errors; fix its cause. The next run that passes this step resolves the alert.'),
        p_run_id, p_run));
  end loop;
  for v_fingerprint in
    select a.fingerprint from credit_private.monitor_alert a
    where a.status = 'open' and a.kind = 'run_error'
      and not exists (select 1 from jsonb_array_elements(p_errors) e where 'run_error:' || (e ->> 'step') = a.fingerprint)
      -- A step that did not run this time cannot prove it passes.
      and (p_check_ok or a.fingerprint in ('run_error:settings', 'run_error:alerts'))
    order by a.fingerprint
  loop
    if credit_private.resolve_monitor_alert(v_fingerprint, p_run_id, p_run) then
      v_outcomes := v_outcomes || jsonb_build_object('fingerprint', v_fingerprint, 'outcome', 'resolved');
    end if;
  end loop;
  return v_outcomes;
end;
$$;

revoke execute on function credit_private.monitor_update_alerts(bigint, credit_private.settings, boolean, jsonb, jsonb, jsonb, jsonb)
  from public, anon, authenticated, service_role;

comment on function credit_private.monitor_update_alerts(bigint, credit_private.settings, boolean, jsonb, jsonb, jsonb, jsonb) is
  'The alerts of one run, returned as [{fingerprint, outcome}]: unrepaired:<category> for what is left and alert-worthy (signature: the ids), threshold:<category> when the run found at least the category''s threshold, run_error:<step> for each step that raised; each one no longer true is resolved.';

create function credit_private.run_monitor(p_force boolean default false)
returns jsonb
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_run_id bigint;
  v_settings credit_private.settings;
  v_report jsonb;
  v_check_ok boolean := false;
  v_findings jsonb := '{}'::jsonb;
  v_repairs jsonb := '[]'::jsonb;
  v_repaired jsonb := '{}'::jsonb;
  v_remaining_detail jsonb;
  v_remaining jsonb := '{}'::jsonb;
  v_alerts jsonb := '[]'::jsonb;
  v_errors jsonb := '[]'::jsonb;
  v_target text;
  v_status text;
  v_run jsonb;
  v_state text;
  v_message text;
  v_context text;
begin
  -- One run at a time; a second waits, then checks from the first one's watermark.
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('credit_private.run_monitor', 0));

  insert into credit_private.monitor_run (forced) values (coalesce(p_force, false)) returning id into v_run_id;

  -- Every step below catches its own error only to record it (run row, alert, warning):
  -- nothing is hidden, and one failing step does not lose the run or the other steps.
  begin
    v_settings := credit_private.current_settings();
  exception when others then
    get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_context = pg_exception_context;
    v_errors := v_errors || jsonb_build_object('step', 'settings', 'sqlstate', v_state, 'message', v_message,
      'context', v_context);
  end;

  if v_settings.singleton and not v_settings.monitor_enabled and not coalesce(p_force, false) then
    update credit_private.monitor_run r
    set status = 'paused', finished_at = clock_timestamp()
    where r.id = v_run_id;
    return jsonb_build_object('run_id', v_run_id, 'status', 'paused');
  end if;

  -- 1. The incremental check (moves the monitor's watermark).
  if v_settings.singleton then
    begin
      v_report := public.diagnose_credits_incremental('monitor', true, v_settings.monitor_repair_batch::integer);
      v_findings := v_report -> 'counts';
      v_check_ok := true;
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_context = pg_exception_context;
      v_errors := v_errors || jsonb_build_object('step', 'check', 'sqlstate', v_state, 'message', v_message,
        'context', v_context);
    end;
  end if;

  -- 2. The repairs the settings allow, in fix_all's order, one target at a time.
  if v_check_ok then
    if v_settings.auto_restore_installation and exists (
      select 1 from jsonb_array_elements(v_report #> '{categories,installation,findings}') f
      where (f ->> 'repairable')::boolean
    ) then
      v_repairs := v_repairs || credit_private.monitor_repair(v_run_id, 'installation', 'restore_installation', null);
    end if;

    if v_settings.auto_retry_failed_webhooks then
      -- Every failed event due for a retry, not only the new ones: the backoff brings an
      -- event back long after it left the check's window (unfinished events have their own
      -- partial index, so this reads only them).
      for v_target in
        select v.event_id
        from credit_private.failed_webhooks v
        where v.status in ('failed', 'received')
          and not v.needs_a_human
          and v.attempts < v_settings.webhook_retry_max_attempts
          and credit_private.webhook_retry_due_at(v.attempts, v.updated_at, v_settings) <= now()
        order by v.received_at, v.event_id
        limit v_settings.monitor_repair_batch
      loop
        v_repairs := v_repairs || credit_private.monitor_repair(v_run_id, 'failed_webhooks', 'retry_failed_webhooks', v_target);
      end loop;
    end if;

    if v_settings.auto_fix_orphaned_recharges then
      for v_target in select credit_private.monitor_repair_targets('orphaned_recharges', v_report) loop
        v_repairs := v_repairs || credit_private.monitor_repair(v_run_id, 'orphaned_recharges', 'fix_orphaned_recharges', v_target);
      end loop;
    end if;

    if v_settings.auto_recompute_balances then
      for v_target in select credit_private.monitor_repair_targets('balance_mismatches', v_report) loop
        -- While a user has a recharge the back-fill has not posted (switched off, or it
        -- failed), the ledger is known to lack credits: recomputing now would take away
        -- credits the back-fill will give back. Left, and alerted, until the back-fill.
        if exists (select 1 from credit_private.orphaned_recharges o where o.user_id = v_target::uuid) then
          v_repairs := v_repairs || jsonb_build_object('category', 'balance_mismatches', 'action', 'recompute_balances',
            'target', v_target, 'outcome', 'skipped', 'changed', 0,
            'detail', 'not recomputed: the user has an orphaned recharge whose entry is missing from the ledger; back-fill it first');
        else
          v_repairs := v_repairs || credit_private.monitor_repair(v_run_id, 'balance_mismatches', 'recompute_balances', v_target);
        end if;
      end loop;
    end if;
  end if;

  v_errors := v_errors || coalesce((
    select jsonb_agg(jsonb_build_object('step', 'repair:' || (x ->> 'category'), 'target', x ->> 'target',
      'sqlstate', x ->> 'sqlstate', 'message', x ->> 'message'))
    from jsonb_array_elements(v_repairs) x
    where x ->> 'outcome' = 'failed'), '[]'::jsonb);
  select coalesce(jsonb_object_agg(c.category, (
      select coalesce(sum((x ->> 'changed')::bigint), 0) from jsonb_array_elements(v_repairs) x
      where x ->> 'category' = c.category and x ->> 'outcome' = 'repaired')), '{}'::jsonb)
  into v_repaired
  from credit_private.monitor_categories() c;

  -- 3. What is left, re-read after the repairs.
  if v_settings.singleton then
    begin
      v_remaining_detail := credit_private.monitor_remaining(v_settings, v_report, v_repairs);
      select coalesce(jsonb_object_agg(c.key, (c.value ->> 'count')::bigint), '{}'::jsonb)
      into v_remaining
      from jsonb_each(v_remaining_detail) c;
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_context = pg_exception_context;
      v_errors := v_errors || jsonb_build_object('step', 'recheck', 'sqlstate', v_state, 'message', v_message,
        'context', v_context);
    end;
  end if;

  v_run := jsonb_build_object('id', v_run_id, 'found', v_findings, 'repaired', v_repaired, 'remaining', v_remaining);

  -- 4. Alerts.
  if v_settings.singleton then
    begin
      v_alerts := credit_private.monitor_update_alerts(v_run_id, v_settings, v_check_ok, v_findings,
        coalesce(v_remaining_detail, '{}'::jsonb), v_errors, v_run);
    exception when others then
      get stacked diagnostics v_state = returned_sqlstate, v_message = message_text, v_context = pg_exception_context;
      v_errors := v_errors || jsonb_build_object('step', 'alerts', 'sqlstate', v_state, 'message', v_message,
        'context', v_context);
    end;
  end if;

  v_status := case
    when jsonb_array_length(v_errors) > 0 then 'failed'
    when exists (select 1 from jsonb_each_text(v_remaining) c where c.value::bigint > 0) then 'problems'
    when exists (select 1 from jsonb_each_text(v_findings) c where c.value::bigint > 0) then 'repaired'
    else 'ok'
  end;

  update credit_private.monitor_run r
  set finished_at = clock_timestamp(),
      status = v_status,
      window_from = (v_report #>> '{window,from}')::timestamptz,
      window_to = (v_report #>> '{window,to}')::timestamptz,
      findings = coalesce(v_findings, '{}'::jsonb),
      finding_ids = coalesce((
        select jsonb_object_agg(c.key, (
          select coalesce(jsonb_agg(distinct credit_private.monitor_finding_id(c.key, f)), '[]'::jsonb)
          from jsonb_array_elements(c.value -> 'findings') f))
        from jsonb_each(v_report -> 'categories') c), '{}'::jsonb),
      repaired = v_repaired,
      remaining = v_remaining,
      repairs = v_repairs,
      alerts = v_alerts,
      errors = v_errors,
      report = v_report || jsonb_build_object('categories', (
        select jsonb_object_agg(c.key, c.value || jsonb_build_object('findings',
          jsonb_path_query_array(c.value -> 'findings', '$[0 to 9]')))
        from jsonb_each(v_report -> 'categories') c))
  where r.id = v_run_id;

  if jsonb_array_length(v_errors) > 0 then
    raise warning 'payment monitor run % recorded % error(s), first: % %', v_run_id, jsonb_array_length(v_errors),
      v_errors #>> '{0,step}', v_errors #>> '{0,message}'
      using hint = 'select errors from credit_private.monitor_run where id = ' || v_run_id;
  end if;

  return jsonb_build_object('run_id', v_run_id, 'status', v_status, 'found', v_findings, 'repaired', v_repaired,
    'remaining', v_remaining, 'alerts', v_alerts, 'errors', v_errors);
end;
$$;

revoke execute on function credit_private.run_monitor(boolean) from public, anon, authenticated, service_role;

comment on function credit_private.run_monitor(boolean) is
  'One monitor run (what the payment-monitor pg_cron job calls every 15 minutes): the incremental check (public.diagnose_credits_incremental, checker monitor); the repairs settings.auto_* allow, through credit_private.run_repair one target at a time (failed webhooks with backoff and at most settings.webhook_retry_max_attempts); what is left re-read; alerts raised, deduplicated and resolved; one credit_private.monitor_run row. A step that raises is rolled back alone and recorded in the row''s errors, alerted (run_error:<step>) and logged as a warning. With settings.monitor_enabled false it records a paused run, unless p_force. Returns {run_id, status, found, repaired, remaining, alerts, errors}.';
