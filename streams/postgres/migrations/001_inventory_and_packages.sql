-- The shipment module's state: stock per product and the packages sent.

CREATE TABLE inventory (
    sku        text PRIMARY KEY,
    quantity   integer NOT NULL CHECK (quantity >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE packages (
    package_id text PRIMARY KEY,
    order_id   text NOT NULL UNIQUE,
    items      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
