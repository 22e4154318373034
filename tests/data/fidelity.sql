-- What a format-2 restore must reproduce exactly, with tables big enough to stream by
-- COPY in several parts at a 1 MiB threshold (a few MiB in all: the test takes seconds).
-- The backup role (pgad_backup) owns the FORCE ROW LEVEL SECURITY table.
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'ecstatic');
CREATE SCHEMA "Ünïcødé ""Schema"".x";

-- Odd names (quotes, dots, '*', unicode, upper case), a generated column, a dropped
-- column and float8 extremes, in a table streamed in several parts.
CREATE TABLE "Ünïcødé ""Schema"".x"."Big*Table.""Quoted"" ÉVÉNEMENTS" (
    id bigint PRIMARY KEY,
    "UPPER Col" text,
    junk text,
    qty integer NOT NULL,
    price numeric(12, 2) NOT NULL,
    reading float8,
    total numeric GENERATED ALWAYS AS (qty * price) STORED,
    at timestamptz NOT NULL,
    span interval
);
INSERT INTO "Ünïcødé ""Schema"".x"."Big*Table.""Quoted"" ÉVÉNEMENTS"
    (id, "UPPER Col", junk, qty, price, reading, at, span)
SELECT g, 'événement ' || g || E' tab\there \\ back "q"', repeat('j', 20), g % 97, g * 0.25,
       (ARRAY['NaN', '-0', '1e308', '-1e308', '5e-324', '2.2250738585072014e-308', 'Infinity',
              '-Infinity', '0.1', NULL])[1 + g % 10]::float8,
       '2024-02-29 23:59:59.999999+00'::timestamptz - g * interval '37 minutes',
       make_interval(days => -(g % 3), hours => g % 25)
  FROM generate_series(1, 40000) g;
ALTER TABLE "Ünïcødé ""Schema"".x"."Big*Table.""Quoted"" ÉVÉNEMENTS" DROP COLUMN junk;
CREATE INDEX "Évé*idx" ON "Ünïcødé ""Schema"".x"."Big*Table.""Quoted"" ÉVÉNEMENTS" (at);

-- No column left to COPY: none at all, and only a dropped one. Both stream; their rows
-- are empty lines, and COPY takes no column list for them.
CREATE TABLE no_columns ();
INSERT INTO no_columns SELECT FROM generate_series(1, 60000);
CREATE TABLE all_dropped (gone int);
INSERT INTO all_dropped SELECT generate_series(1, 60000);
ALTER TABLE all_dropped DROP COLUMN gone;

CREATE TABLE floats (k text PRIMARY KEY, v float8, r real);
INSERT INTO floats VALUES ('nan', 'NaN', 'NaN'), ('-0', '-0', '-0'), ('max', '1e308', '3.4e38'),
    ('min-normal', '2.2250738585072014e-308', '1.17549435e-38'),
    ('subnormal', '5e-324', '1e-45'), ('inf', 'Infinity', '-Infinity'), ('tenth', 0.1, 0.1);

-- Inheritance: the parent and the child each hold only their own rows; both stream.
CREATE TABLE vehicles (id bigint PRIMARY KEY, name text NOT NULL, pad text);
CREATE TABLE cars (doors smallint) INHERITS (vehicles);
INSERT INTO vehicles SELECT g, 'vehicle ' || g, repeat('v', 60) FROM generate_series(1, 14000) g;
INSERT INTO cars SELECT g, 'car ' || g, repeat('c', 60), 2 + g % 3
  FROM generate_series(100001, 130000) g;

-- Range partitions stream (leaf by leaf); hash partitions on an enum column are loaded
-- through their root by pg_dump (enum hash codes depend on OIDs).
CREATE TABLE metrics (at date NOT NULL, device int, value float8, note text)
    PARTITION BY RANGE (at);
CREATE TABLE metrics_2023 PARTITION OF metrics FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE metrics_2024 PARTITION OF metrics FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
INSERT INTO metrics SELECT '2023-01-01'::date + g % 730, g % 50, g / 3.0, repeat('m', 40)
  FROM generate_series(1, 40000) g;
CREATE TABLE feelings (id int, mood mood NOT NULL, why text) PARTITION BY HASH (mood);
CREATE TABLE feelings_0 PARTITION OF feelings FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE feelings_1 PARTITION OF feelings FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE feelings_2 PARTITION OF feelings FOR VALUES WITH (MODULUS 3, REMAINDER 2);
INSERT INTO feelings SELECT g, (enum_range(NULL::mood))[1 + g % 4], repeat('f', 60)
  FROM generate_series(1, 30000) g;

CREATE UNLOGGED TABLE cache (k text PRIMARY KEY, v text);
INSERT INTO cache SELECT 'key' || g, md5(g::text) || repeat('u', 40) FROM generate_series(1, 20000) g;

-- Row level security, forced on the owner (the backup role), with a policy.
CREATE TABLE vault (id int PRIMARY KEY, owner_name text, secret text);
INSERT INTO vault SELECT g, 'user' || g % 10, repeat('s', 80) FROM generate_series(1, 12000) g;
ALTER TABLE vault OWNER TO pgad_backup;
ALTER TABLE vault ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault FORCE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON vault USING (owner_name = current_user);

-- Sequences: free-standing (at a position), identity, serial.
CREATE SEQUENCE invoice_no START 1000 INCREMENT 7;
SELECT setval('invoice_no', 424242, true);
CREATE SEQUENCE never_called;
CREATE TABLE tickets (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, subject text);
INSERT INTO tickets (subject) SELECT 'ticket ' || g FROM generate_series(1, 321) g;
CREATE TABLE notes (id serial PRIMARY KEY, body text);
INSERT INTO notes (body) SELECT 'note ' || g FROM generate_series(1, 77) g;

-- A thousand small tables.
CREATE SCHEMA small;
DO $$
BEGIN
    FOR i IN 1..1000 LOOP
        EXECUTE format('CREATE TABLE small.%I (id int PRIMARY KEY, v text)', 't' || i);
        EXECUTE format('INSERT INTO small.%I VALUES (1, %L), (2, NULL)', 't' || i, 'v' || i);
    END LOOP;
END $$;

SELECT lo_from_bytea(0, convert_to(repeat('large object payload ', 5000), 'UTF8'));
SELECT lo_from_bytea(0, decode(repeat('00ff', 3000), 'hex'));

-- A foreign key into a streamed table: --clean must drop it before the table.
CREATE TABLE tags (id int PRIMARY KEY, vehicle_id bigint REFERENCES vehicles (id), label text);
INSERT INTO tags SELECT g, g, 'tag ' || g FROM generate_series(1, 500) g;
