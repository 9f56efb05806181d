// pg_cron itself runs the monitor: the payment-monitor job's own command, scheduled under a
// test name every minute, produces a run row. This proves the command is valid as pg_cron
// runs it (its own background worker, as the job's owner, in its own transaction). It waits
// for pg_cron's next minute, so it takes up to about 75 s.
import assert from "node:assert/strict";
import { withDb } from "./_helpers/db.ts";

Deno.test("pg_cron runs the payment-monitor job's command and the run is recorded", async () => {
  await withDb(async (sql) => {
    const [job] = await sql`select command from cron.job where jobname = 'payment-monitor'`;
    assert.equal(job.command, "select credit_private.run_monitor()");
    const [settings] = await sql`select monitor_enabled from credit_private.settings`;
    const name = `test-payment-monitor-${crypto.randomUUID()}`;
    // npm test pauses the scheduled monitor during the Deno tests; let this one run for real.
    await sql`update credit_private.settings set monitor_enabled = true`;
    const [scheduled] = await sql`select cron.schedule(${name}, '* * * * *', ${job.command}) as jobid`;
    try {
      let detail: Record<string, unknown> | undefined;
      const deadline = Date.now() + 80_000;
      while (Date.now() < deadline) {
        [detail] =
          await sql`select job_pid, status, return_message, start_time, end_time from cron.job_run_details
          where jobid = ${scheduled.jobid} and status in ('succeeded', 'failed') order by start_time limit 1`;
        if (detail) break;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      assert.ok(detail, "pg_cron did not run the job within 80 s");
      assert.equal(detail.status, "succeeded", String(detail.return_message));
      // The run row of this job's run: same server process, within its start and end.
      const runs = await sql`select id, status from credit_private.monitor_run
        where backend_pid = ${detail.job_pid as number}
          and started_at >= ${detail.start_time as Date} and finished_at <= ${detail.end_time as Date}`;
      assert.equal(runs.length, 1, "one run row for the job's run");
      assert.notEqual(runs[0].status, "paused");
      assert.notEqual(runs[0].status, "running");
    } finally {
      await sql`select cron.unschedule(${name})`;
      await sql`update credit_private.settings set monitor_enabled = ${settings.monitor_enabled}`;
    }
  });
});
