-- Sample data for `serve --demo`: a small shop, enough rows for the progress bar to move.
CREATE TABLE customers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    email      text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE products (
    id    serial PRIMARY KEY,
    name  text NOT NULL,
    price numeric(10, 2) NOT NULL CHECK (price >= 0),
    tags  text[] NOT NULL DEFAULT '{}'
);
CREATE TABLE orders (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    product_id  integer NOT NULL REFERENCES products (id),
    quantity    integer NOT NULL,
    details     jsonb,
    ordered_at  timestamptz NOT NULL
);
CREATE INDEX orders_customer_idx ON orders (customer_id);

INSERT INTO customers (name, email, created_at)
SELECT 'Customer ' || g, 'customer' || g || '@example.com', now() - g * interval '1 hour'
FROM generate_series(1, 20000) AS g;

INSERT INTO products (name, price, tags)
SELECT 'Product ' || g, round((random() * 500)::numeric, 2), ARRAY['tag' || (g % 7), 'tag' || (g % 11)]
FROM generate_series(1, 500) AS g;

INSERT INTO orders (customer_id, product_id, quantity, details, ordered_at)
SELECT 1 + (g::bigint * 7919) % 20000, 1 + g % 500, 1 + g % 5,
       jsonb_build_object('note', md5(g::text), 'gift', g % 3 = 0),
       now() - g * interval '1 minute'
FROM generate_series(1, 100000) AS g;

CREATE VIEW order_totals AS
SELECT c.id AS customer_id, c.name, sum(o.quantity * p.price) AS total
FROM orders o JOIN customers c ON c.id = o.customer_id JOIN products p ON p.id = o.product_id
GROUP BY c.id, c.name;
ANALYZE;
