-- Orders whose shipment was cancelled before any package was sent (CancelShipment answered
-- with ShipmentCancelled). A SendPackage for one of them is refused, never shipped. An order
-- has a package or a cancellation, never both: the handler decides both under a lock per order.

CREATE TABLE shipment_cancellations (
    order_id     text PRIMARY KEY,
    reason       text NOT NULL,
    -- the CancelShipment that recorded the cancellation
    message_id   text NOT NULL,
    cancelled_at timestamptz NOT NULL DEFAULT now()
);
