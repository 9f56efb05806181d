-- Why: the weekly report counts the Stripe events received during a week and finds, for
-- each recharge credited that week, the event that paid it. The inbox has no index on
-- received_at (only a partial one on unfinished events), so without this the report would
-- read the whole inbox every week.
-- Building it blocks writes to the inbox (the webhook) for the build's duration. On a large
-- existing installation, build it first with the same statement plus `concurrently`, outside
-- a transaction; this one then does nothing (hence `if not exists`).

-- squawk-ignore require-concurrent-index-creation
create index if not exists stripe_webhook_event_received_at_idx
  on credit_private.stripe_webhook_event (received_at);

comment on index credit_private.stripe_webhook_event_received_at_idx is
  'Lets the weekly report read one week of inbox events by range scan.';
