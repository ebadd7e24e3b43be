-- Exactly-once effects: the inbox remembers every processed message id, and the outbox holds
-- the events written in the same transaction until the relay has published them.

CREATE TABLE inbox (
    message_id   text PRIMARY KEY,
    processed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    message_id   text NOT NULL UNIQUE,
    topic        text NOT NULL,
    key          bytea,
    value        bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

-- The relay reads the unpublished rows of its topics in id order.
CREATE INDEX outbox_unpublished ON outbox (topic, id) WHERE published_at IS NULL;
