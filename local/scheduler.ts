// Local stand-in for the one pg_cron job that needs pg_net and Vault, which the local stack
// does not have: payment-monitor-deliver, which on hosted Supabase POSTs to the
// payment-monitor function at minutes 1, 16, 31 and 46 of every hour (one minute after each
// monitor run; see credit_private.payment_monitor_jobs()). pg_cron itself runs the monitor,
// the weekly report and the clean-up locally as everywhere. Started by local/stack.ts when
// LOCAL_SCHEDULER=1 (npm start sets it; npm test does not: its tests call the function).

/** The minutes of the hour of the pg_net job's schedule, "1,16,31,46 * * * *" (UTC). */
export const DELIVERY_MINUTES = [1, 16, 31, 46];

/** The first start of a minute strictly after `now` whose minute is in DELIVERY_MINUTES. */
export function nextDeliveryAt(now: Date, minutes: number[] = DELIVERY_MINUTES): Date {
  const next = new Date(now.getTime());
  next.setUTCSeconds(0, 0);
  for (let i = 0; i < 24 * 60; i++) {
    next.setUTCMinutes(next.getUTCMinutes() + 1);
    if (minutes.includes(next.getUTCMinutes())) return next;
  }
  throw new Error("no delivery minute in the schedule");
}

export interface LocalScheduler {
  stop(): void;
}

export function startLocalScheduler(options: {
  functionUrl: string;
  serviceRoleKey: string;
  log?: (message: string) => void;
}): LocalScheduler {
  const log = options.log ?? console.log;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;

  async function deliver(): Promise<void> {
    try {
      const response = await fetch(options.functionUrl, {
        method: "POST",
        headers: { authorization: `Bearer ${options.serviceRoleKey}`, "content-type": "application/json" },
        body: "{}",
      });
      log(`scheduler: payment-monitor answered ${response.status} ${await response.text()}`);
    } catch (err) {
      log(`scheduler: payment-monitor unreachable: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  function arm(): void {
    if (stopped) return;
    const delay = nextDeliveryAt(new Date()).getTime() - Date.now();
    timer = setTimeout(async () => {
      await deliver();
      arm();
    }, delay);
  }

  log(`scheduler: payment-monitor at minutes ${DELIVERY_MINUTES.join(",")} of every hour (UTC)`);
  arm();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
