-- The orders read model: one row per order, projected from the four events topics
-- (streams/read_model.py). Every value comes from the events, never from the clock, so
-- projecting the same events again gives the same rows.

CREATE TABLE orders_view (
    order_id            text PRIMARY KEY,
    client_id           text,
    total_price         numeric(14, 2),
    currency            text,
    -- pending, initialized, paid, shipped, completed, cancelled
    state               text NOT NULL,
    -- requested, finalized, failed, settled, discarded, refunded; NULL before any payment
    payment_status      text,
    payment_id          text,
    created_at          timestamptz,
    updated_at          timestamptz NOT NULL,
    shipped_at          timestamptz,
    completed_at        timestamptz,
    cancelled_at        timestamptz,
    cancellation_reason text
);

CREATE INDEX orders_view_state ON orders_view (state, updated_at);
CREATE INDEX orders_view_created ON orders_view (created_at);

-- Where the projection stands in each events partition. It is updated in the same transaction
-- as the rows, so a record delivered again below next_offset is skipped.
CREATE TABLE read_model_offsets (
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

-- The ids of the events applied to orders_view: a copy of an event under another offset (the
-- outbox relay publishes at least once) changes nothing.
CREATE TABLE read_model_applied (
    message_id text PRIMARY KEY,
    order_id   text NOT NULL
);
