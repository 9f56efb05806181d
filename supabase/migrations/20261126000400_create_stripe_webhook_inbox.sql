-- Why: a delivery that fails must not be lost. Every verified Stripe event is stored here,
-- keyed by its event id, in the same transaction that applies it; a failure is recorded
-- with its error and attempts so it can be retried from the stored payload.

create table credit_private.stripe_webhook_event (
  event_id text primary key,
  type text not null,
  livemode boolean not null default false,
  payload jsonb not null,
  status text not null default 'received',
  attempts bigint not null default 0,
  last_error text,
  last_error_code text,
  -- Lets a refund or dispute that arrived before its payment be found when the payment lands.
  payment_intent_id text,
  stripe_created_at timestamptz,
  received_at timestamptz not null default now(),
  processed_at timestamptz,
  updated_at timestamptz not null default now(),
  constraint stripe_webhook_event_status_known
    check (status in ('received', 'processed', 'failed', 'ignored', 'deferred')),
  constraint stripe_webhook_event_attempts_not_negative check (attempts >= 0)
);

create index stripe_webhook_event_unfinished_idx on credit_private.stripe_webhook_event (status, received_at)
  where status in ('received', 'failed', 'deferred');
create index stripe_webhook_event_deferred_payment_intent_idx
  on credit_private.stripe_webhook_event (payment_intent_id) where status = 'deferred';

alter table credit_private.stripe_webhook_event enable row level security;
revoke all on credit_private.stripe_webhook_event from public, anon, authenticated, service_role;

comment on table credit_private.stripe_webhook_event is
  'Inbox of verified Stripe events, one row per event id: the raw payload, its processing status (received, processed, failed, ignored, deferred), attempts and last error. A processed or ignored event is never applied again.';
