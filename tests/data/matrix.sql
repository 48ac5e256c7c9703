-- A compact rich.sql for the PostgreSQL 14–18 matrix: the same kinds of objects, few rows,
-- nothing that any of those majors rejects.
CREATE EXTENSION citext;
CREATE EXTENSION hstore;
CREATE EXTENSION pgcrypto;

CREATE SCHEMA app;
CREATE SCHEMA "Mixed Case";

CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN app.positive_int AS integer CHECK (VALUE > 0);
CREATE TYPE app.address AS (street text, city text, zip text);

CREATE TABLE app.people (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL,
    email   citext UNIQUE,
    mood    app.mood,
    age     app.positive_int,
    home    app.address,
    attrs   hstore,
    doc     jsonb,
    photo   bytea,
    tags    text[],
    ratio   double precision,
    amount  numeric,
    spans   int4multirange,  -- PostgreSQL 14+
    seen    timestamptz,
    note    text
);
COMMENT ON TABLE app.people IS 'people, with ümlauts and "quotes"';

CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.note := coalesce(NEW.note, 'touched');
    RETURN NEW;
END
$$;
CREATE TRIGGER people_touch BEFORE INSERT ON app.people FOR EACH ROW EXECUTE FUNCTION app.touch();

INSERT INTO app.people (name, email, mood, age, home, attrs, doc, photo, tags, ratio, amount, spans, seen, note)
VALUES
    ('Zoë 北京 🐘', 'Zoe@Example.com', 'happy', 31, ROW('1 Main St', 'Zürich', '8000'), 'a=>1, b=>"two"',
     '{"k": [1, 2.5, null, "x"], "nested": {"ü": true}}', '\x00ff10'::bytea, ARRAY['a', 'b,c', 'd"e', NULL],
     'NaN', 'NaN', '{[1,3), [7,9)}', '2026-01-01 12:00:00+00', NULL),
    ('Tab	and newline
here', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'Infinity', '-12345678901234567890.123456789', '{}',
     '-infinity', 'explicit note'),
    ('back\slash', 'x@y.z', 'sad', 1, ROW(NULL, NULL, NULL), '', 'null', ''::bytea, '{}', -0.0, 0, NULL, NULL,
     E'quote''s');
INSERT INTO app.people (name, email, doc, photo)
SELECT 'bulk ' || g, 'bulk' || g || '@example.com', jsonb_build_object('g', g), gen_random_bytes(32)
FROM generate_series(1, 200) AS g;

CREATE TABLE "Mixed Case"."Order Items" (
    "Id"     integer PRIMARY KEY,
    "Qty"    integer NOT NULL,
    "Double" integer GENERATED ALWAYS AS ("Qty" * 2) STORED,
    "Person" bigint REFERENCES app.people (id)
);
INSERT INTO "Mixed Case"."Order Items" ("Id", "Qty", "Person") SELECT g, g % 7, 1 + g % 100 FROM generate_series(1, 100) g;

CREATE TABLE app.events (id bigint NOT NULL, at date NOT NULL, payload text) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO app.events SELECT g, date '2025-06-01' + g, repeat('x', g % 50) FROM generate_series(1, 300) g;

CREATE UNLOGGED TABLE app.cache (k text PRIMARY KEY, v text);
INSERT INTO app.cache VALUES ('one', '1'), ('two', NULL);

CREATE SEQUENCE app.ticket_seq START 1000 INCREMENT 7;
SELECT nextval('app.ticket_seq') FROM generate_series(1, 5);

CREATE VIEW app.adults AS SELECT id, name FROM app.people WHERE age >= 18;
CREATE MATERIALIZED VIEW app.mood_counts AS SELECT mood, count(*) AS n FROM app.people GROUP BY mood;

CREATE FUNCTION "Mixed Case"."Shout"(t text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT upper(t) || '!' $$;

SELECT lo_from_bytea(0, 'a small large object'::bytea);
SELECT lo_from_bytea(0, (SELECT string_agg(gen_random_bytes(1000), ''::bytea) FROM generate_series(1, 5)));
