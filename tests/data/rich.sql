-- A database rich in types and objects: what a restore must reproduce exactly.
CREATE EXTENSION hstore;
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
CREATE SCHEMA "Odd Schema";
CREATE SCHEMA "weird""quote";
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE "Odd Schema".point3 AS (x float8, y float8, z float8);
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);

CREATE TABLE "Odd Schema"."Mixed Case Table" (
    id bigserial PRIMARY KEY,
    mood mood NOT NULL,
    location "Odd Schema".point3,
    qty positive_int,
    tags text[],
    matrix int[][],
    doc jsonb,
    blob bytea,
    price numeric(20, 6),
    period tstzrange,
    addr inet,
    net cidr,
    uid uuid,
    attrs hstore,
    email citext,
    happened timestamptz,
    total numeric GENERATED ALWAYS AS (price * qty) STORED
);
INSERT INTO "Odd Schema"."Mixed Case Table"
    (mood, location, qty, tags, matrix, doc, blob, price, period, addr, net, uid, attrs, email, happened)
SELECT (ARRAY['sad','ok','happy'])[1 + g % 3]::mood,
       ROW(g, g * 1.5, -g)::"Odd Schema".point3,
       1 + g % 17,
       ARRAY['t' || g, 'quote''s', 'ünïcødé', NULL],
       ARRAY[[g, g + 1], [g + 2, g + 3]],
       jsonb_build_object('n', g, 'nested', jsonb_build_object('arr', jsonb_build_array(g, 'x', NULL, true))),
       decode(md5(g::text), 'hex') || '\x00ff00'::bytea,
       g * 3.141592,
       tstzrange('2020-01-01'::timestamptz + g * interval '1 hour', '2020-01-01'::timestamptz + (g + 1) * interval '1 hour'),
       ('10.0.' || (g % 255) || '.' || (g % 7))::inet,
       '192.168.0.0/16'::cidr,
       md5(g::text)::uuid,
       hstore(ARRAY['k' || g, 'v'], ARRAY['v' || g, NULL]),
       'User' || g || '@Example.COM',
       '2024-02-29 12:00:00+00'::timestamptz + g * interval '1 minute'
  FROM generate_series(1, 2000) g;
INSERT INTO "Odd Schema"."Mixed Case Table" (mood, qty, doc, blob, price)
VALUES ('ok', 1, '{"empty": {}, "s": "tab\there\nnewline \"q\" \\ back"}', '', 'NaN');

CREATE TABLE "weird""quote"."table.with.dots" (k text PRIMARY KEY, v float8);
INSERT INTO "weird""quote"."table.with.dots" VALUES ('inf', 'Infinity'), ('-inf', '-Infinity'), ('nan', 'NaN'), ('zero', -0.0);

CREATE TABLE measurements (city int, logdate date NOT NULL, reading numeric) PARTITION BY RANGE (logdate);
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO measurements SELECT g % 10, '2024-01-01'::date + g, g / 7.0 FROM generate_series(0, 700) g;

CREATE UNLOGGED TABLE cache_entries (k text PRIMARY KEY, v text);
INSERT INTO cache_entries SELECT 'k' || g, repeat('v', g % 50) FROM generate_series(1, 500) g;

CREATE TABLE empty_table (id int);

CREATE SEQUENCE invoice_no START 1000 INCREMENT 7;
SELECT setval('invoice_no', 424242, true);
CREATE SEQUENCE "Odd Schema".never_called;
SELECT setval('"Odd Schema".never_called', 5, false);

CREATE VIEW happy_rows AS SELECT id, doc FROM "Odd Schema"."Mixed Case Table" WHERE mood = 'happy';
CREATE MATERIALIZED VIEW mood_counts AS SELECT mood, count(*) AS n FROM "Odd Schema"."Mixed Case Table" GROUP BY mood;

CREATE TABLE audit_log (at timestamptz DEFAULT now(), what text);
CREATE FUNCTION log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit_log (at, what) VALUES ('2000-01-01', TG_OP || ':' || NEW.k); RETURN NEW; END $$;
CREATE TRIGGER dots_audit AFTER INSERT ON "weird""quote"."table.with.dots" FOR EACH ROW EXECUTE FUNCTION log_change();
INSERT INTO "weird""quote"."table.with.dots" VALUES ('after-trigger', 1);

CREATE INDEX mixed_doc_gin ON "Odd Schema"."Mixed Case Table" USING gin (doc);
CREATE INDEX mixed_email_trgm ON "Odd Schema"."Mixed Case Table" USING gin ((email::text) gin_trgm_ops);

COMMENT ON TABLE "Odd Schema"."Mixed Case Table" IS 'a table with ''every'' type';
COMMENT ON COLUMN measurements.reading IS 'degrees';
COMMENT ON SCHEMA "weird""quote" IS 'quotes in names';

SELECT lo_from_bytea(0, convert_to(repeat('large object payload ', 10000), 'UTF8'));
SELECT lo_from_bytea(0, decode(repeat('00ff', 3000), 'hex'));
